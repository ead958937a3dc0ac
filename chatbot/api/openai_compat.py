"""An OpenAI-compatible API at /v1/ (models and chat completions) for existing client libraries.

Authenticated by our API keys as bearer tokens. Every request becomes a turn in a new `api`
conversation of the key's owner, so it is traced, judged and reviewed like a chat in the browser.
Errors follow OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from chatbot.agent.turn import turn_run
from chatbot.api import selectors as api_selectors
from chatbot.api.auth import OPENAI_AUTH, caller, credentials_sent
from chatbot.api.errors import (
    BAD_JSON,
    ObjectParser,
    is_unparsable_body,
    too_big,
    validation_errors,
)
from chatbot.api.openai_schemas import (
    ChatCompletionIn,
    chunk_body,
    completion_body,
    error_body,
    prompt_from,
    usage_body,
)
from chatbot.api.schemas import requested_model
from chatbot.api.streaming import Crashed, Piece, emit_nothing, sse_data, sse_response, turn_events
from chatbot.chat import services
from chatbot.llm.router import route_choose
from chatbot.llm.types import NoModelAvailable, Overrides, Prompt
from chatbot.models import Conversation, Turn

openai_api = NinjaAPI(
    title="OpenAI-compatible API",
    version="1",
    urls_namespace="openai",
    parser=ObjectParser(),
    # The format is OpenAI's, documented by them; /api/docs documents our own API.
    docs_url=None,
    openapi_url=None,
    auth=OPENAI_AUTH,
)


class OpenAIError(Exception):
    def __init__(self, status: int, message: str, type_: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type_, code


def _error(
    status: int, message: str, type_: str, code: str | None = None, param: str | None = None
) -> JsonResponse:
    response = JsonResponse(error_body(message, type_, code, param), status=status)
    if status >= 500:
        # The turn is already recorded as failed; a client's automatic retry would only repeat it.
        response["x-should-retry"] = "false"
    return response


@openai_api.exception_handler(OpenAIError)
def _openai_error(request: HttpRequest, exc: OpenAIError) -> HttpResponse:
    return _error(exc.status, exc.message, exc.type, exc.code)


@openai_api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    message = (
        "Incorrect API key provided."
        if credentials_sent(request)
        else "Missing API key: send it as 'Authorization: Bearer sk-sa-…'."
    )
    return _error(401, message, "invalid_request_error", "invalid_api_key")


@openai_api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if is_unparsable_body(exc):
        return _error(400, BAD_JSON, "invalid_request_error")
    if exc.status_code == 403:
        return _error(403, exc.message, "permission_error", "permission_denied")
    return _error(exc.status_code, exc.message, "invalid_request_error")


@openai_api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return _error(413, too_big(), "invalid_request_error")


@openai_api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    summary, fields = validation_errors(exc.errors)
    return _error(400, summary, "invalid_request_error", param=fields[0]["field"] or None)


@openai_api.exception_handler(services.InvalidInput)
def _invalid_input(request: HttpRequest, exc: services.InvalidInput) -> HttpResponse:
    return _error(400, str(exc), "invalid_request_error")


@openai_api.get("/models", summary="List the models that can be asked for")
def models_list(request: HttpRequest) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {
                "id": endpoint.name,
                "object": "model",
                "created": int(endpoint.created_at.timestamp()),
                "owned_by": endpoint.provider,
            }
            for endpoint in api_selectors.endpoints_enabled()
        ],
    }


def _turn_start(user: User, prompt: Prompt, requested: str | None) -> tuple[Turn, str]:
    """Check the model, then save the question before the model is called. Returns the turn and
    the name of the endpoint the router chose (for the stream's chunks)."""
    services.message_validate(prompt.question)
    try:
        route = route_choose(requested=requested)
    except NoModelAvailable as exc:
        if requested:
            raise OpenAIError(
                404, exc.user_message, "invalid_request_error", "model_not_found"
            ) from exc
        raise OpenAIError(503, exc.user_message, "server_error", "no_model_available") from exc
    conversation = services.conversation_create(owner=user, channel=Conversation.Channel.API)
    turn = services.turn_create(conversation=conversation, user_text=prompt.question)
    return turn, route.endpoint.name


async def _chunks(
    turn_id: int,
    model: str,
    requested: str | None,
    prompt: Prompt,
    include_usage: bool,
    overrides: Overrides,
) -> AsyncIterator[str]:
    created = int(time.time())
    yield sse_data(chunk_body(turn_id, model, created, delta={"role": "assistant", "content": ""}))
    events = turn_events(
        turn_id=turn_id, requested_model=requested, prompt=prompt, overrides=overrides
    )
    async with aclosing(events):
        async for event in events:
            if isinstance(event, Piece):
                yield sse_data(chunk_body(turn_id, model, created, delta={"content": event.text}))
            elif isinstance(event, Crashed):
                yield sse_data(error_body(event.error, "server_error", "internal_error"))
                return
            elif event.outcome.status != Turn.Status.DONE:
                yield sse_data(error_body(event.outcome.error, "server_error", "model_error"))
                return
            else:
                yield sse_data(chunk_body(turn_id, model, created, delta={}, finish_reason="stop"))
                if include_usage:
                    usage = usage_body(event.outcome)
                    yield sse_data(chunk_body(turn_id, model, created, usage=usage))
    yield sse_data("[DONE]")


@openai_api.post("/chat/completions", summary="Create a chat completion")
async def chat_completions(
    request: HttpRequest, payload: ChatCompletionIn
) -> HttpResponse | StreamingHttpResponse | dict[str, Any]:
    """`max_tokens` (or `max_completion_tokens`) may lower the catalogue's output limit, never raise
    it; `temperature` applies as given."""
    overrides = Overrides(
        max_tokens=payload.max_completion_tokens or payload.max_tokens,
        temperature=payload.temperature,
    )
    prompt = prompt_from(payload.messages)
    requested = requested_model(payload.model)
    turn, model = await sync_to_async(_turn_start)(caller(request), prompt, requested)
    if payload.stream:
        include_usage = bool(payload.stream_options and payload.stream_options.include_usage)
        return sse_response(_chunks(turn.pk, model, requested, prompt, include_usage, overrides))
    outcome = await turn_run(
        turn_id=turn.pk,
        emit=emit_nothing,
        requested_model=requested,
        prompt=prompt,
        overrides=overrides,
    )
    if outcome.status != Turn.Status.DONE:
        return _error(502, outcome.error, "server_error", "model_error")
    return completion_body(outcome)
