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
from ninja.errors import AuthenticationError, HttpError, ValidationError

from chatbot.accounts.limits import LimitExceeded, answer_slot_release
from chatbot.agent.passthrough import PassOutcome, turn_passthrough
from chatbot.agent.turn import turn_run
from chatbot.api import selectors as api_selectors
from chatbot.api.admission import admitted, released_after
from chatbot.api.auth import (
    OPENAI_AUTH,
    OPENAI_STREAMING_AUTH,
    KeyRefusedError,
    caller,
    credentials_sent,
)
from chatbot.api.contract import OPENAI_ERRORS, DocumentedAPI
from chatbot.api.errors import (
    ObjectParser,
    is_unparsable_body,
    too_big,
    unparsable_message,
    validation_errors,
)
from chatbot.api.openai_schemas import (
    COMPLETION_RESPONSES,
    MODELS_RESPONSES,
    ChatCompletionIn,
    chunk_body,
    completion_body,
    error_body,
    passthrough_body,
    prompt_from,
    tool_calls_body,
    usage_body,
    wire_messages_from,
)
from chatbot.api.schemas import requested_model
from chatbot.api.streaming import Crashed, Piece, emit_nothing, sse_data, sse_response, turn_events
from chatbot.chat import services
from chatbot.llm.router import Route, route_choose
from chatbot.llm.types import NoModelAvailable, Overrides, Prompt
from chatbot.models import Conversation, Turn
from chatbot.runtime.db import commit_unflushed, db_sync_to_async

openai_api = DocumentedAPI(
    title="OpenAI-compatible API",
    version="1",
    urls_namespace="openai",
    parser=ObjectParser(),
    errors=OPENAI_ERRORS,
    # The format is OpenAI's, documented by them; /v1/openapi.json states the subset we accept and
    # answer (fuzzed by tests/test_api_fuzz.py), with no docs page of its own.
    docs_url=None,
    openapi_url="/openapi.json",
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


# OpenAI's own 429s: "requests"/"rate_limit_exceeded" for a rate, "insufficient_quota" for a quota.
# A cap on answers at once is a rate to a client: retrying shortly helps.
LIMIT_ERRORS: dict[str, tuple[str, str]] = {
    "rate": ("requests", "rate_limit_exceeded"),
    "concurrency": ("requests", "rate_limit_exceeded"),
    "quota": ("insufficient_quota", "insufficient_quota"),
}


@openai_api.exception_handler(LimitExceeded)
def _limited(request: HttpRequest, exc: LimitExceeded) -> HttpResponse:
    type_, code = LIMIT_ERRORS[exc.kind]
    response = _error(429, exc.message, type_, code)
    response["Retry-After"] = str(exc.retry_after)
    if exc.kind == "quota":
        # Client libraries retry a 429 at once; a daily quota will not have reset by then.
        response["x-should-retry"] = "false"
    return response


@openai_api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    if isinstance(exc, KeyRefusedError):
        message = exc.message
    elif credentials_sent(request):
        message = "Incorrect API key provided."
    else:
        message = "Missing API key: send it as 'Authorization: Bearer sk-sa-…'."
    return _error(401, message, "invalid_request_error", "invalid_api_key")


@openai_api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if is_unparsable_body(exc):
        return _error(400, unparsable_message(exc), "invalid_request_error")
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


def _models() -> list[dict[str, Any]]:
    return [
        {
            "id": endpoint.name,
            "object": "model",
            "created": int(endpoint.created_at.timestamp()),
            "owned_by": endpoint.provider,
        }
        for endpoint in api_selectors.endpoints_enabled()
    ]


@openai_api.get(
    "/models",
    summary="List the models that can be asked for",
    openapi_extra={"responses": MODELS_RESPONSES},
    auth=OPENAI_STREAMING_AUTH,
)
async def models_list(request: HttpRequest) -> dict[str, Any]:
    # The key check and the read on the database threads, which keep their connections: as a
    # synchronous view under daphne, each request's own thread opened a Postgres connection.
    return {"object": "list", "data": await db_sync_to_async(_models)()}


def _route(requested: str | None) -> Route:
    try:
        return route_choose(requested=requested)
    except NoModelAvailable as exc:
        if requested:
            raise OpenAIError(
                404, exc.user_message, "invalid_request_error", "model_not_found"
            ) from exc
        raise OpenAIError(503, exc.user_message, "server_error", "no_model_available") from exc


def _turn_save(user: User, question: str) -> Turn:
    # The conversation and its question in one commit that does not wait for the disk (the
    # turn's final save flushes it): two flushes were a third of this step's time.
    with commit_unflushed():
        conversation = services.conversation_create(owner=user, channel=Conversation.Channel.API)
        return services.turn_create(conversation=conversation, user_text=question)


def _turn_start(user: User, prompt: Prompt, requested: str | None) -> tuple[Turn, str, str | None]:
    """Check the model and the caller's limits, then save the question before the model is
    called. Returns the turn, the name of the endpoint the router chose (for the stream's chunks)
    and the answer slot to give back."""
    services.message_validate(prompt.question)
    route = _route(requested)
    turn, slot = admitted(user, lambda: _turn_save(user, prompt.question))
    return turn, route.endpoint.name, slot


def _tools_turn_start(
    user: User, question: str, requested: str | None
) -> tuple[Turn, Route, str | None]:
    """As `_turn_start`, for a caller's own tools: only a model that calls tools natively can
    take them."""
    services.message_validate(question)
    route = _route(requested)
    if route.endpoint.tool_calling != "native":
        raise OpenAIError(
            400,
            f"The model '{route.endpoint.name}' cannot call your tools (its tool calling is "
            f"'{route.endpoint.tool_calling}', not native). Ask for a model that calls tools "
            "natively, or send no tools to use ours.",
            "invalid_request_error",
            "model_cannot_call_tools",
        )
    turn, slot = admitted(user, lambda: _turn_save(user, question))
    return turn, route, slot


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
                    usage = usage_body(event.outcome.usage)
                    yield sse_data(chunk_body(turn_id, model, created, usage=usage))
    yield sse_data("[DONE]")


async def _passthrough_chunks(outcome: PassOutcome, include_usage: bool) -> AsyncIterator[str]:
    """A passed-through reply as a stream: it is complete before the first chunk (tool calls are
    only usable whole), then sent in OpenAI's chunk shape."""
    turn_id, model, created = outcome.turn_id, outcome.endpoint_name, int(time.time())
    if outcome.status != Turn.Status.DONE:
        yield sse_data(error_body(outcome.error, "server_error", "model_error"))
        return
    yield sse_data(chunk_body(turn_id, model, created, delta={"role": "assistant", "content": ""}))
    if outcome.text:
        yield sse_data(chunk_body(turn_id, model, created, delta={"content": outcome.text}))
    if outcome.calls:
        calls = [{"index": n, **call} for n, call in enumerate(tool_calls_body(outcome.calls))]
        yield sse_data(chunk_body(turn_id, model, created, delta={"tool_calls": calls}))
    finish = "tool_calls" if outcome.calls else "stop"
    yield sse_data(chunk_body(turn_id, model, created, delta={}, finish_reason=finish))
    if include_usage:
        usage = usage_body(outcome.usage)
        yield sse_data(chunk_body(turn_id, model, created, usage=usage))
    yield sse_data("[DONE]")


async def _with_callers_tools(
    request: HttpRequest, payload: ChatCompletionIn, overrides: Overrides
) -> HttpResponse | StreamingHttpResponse | dict[str, Any]:
    messages, question = wire_messages_from(payload.messages)
    requested = requested_model(payload.model)
    user = caller(request)
    turn, route, slot = await sync_to_async(_tools_turn_start)(user, question, requested)
    try:
        outcome = await turn_passthrough(
            turn_id=turn.pk,
            route=route,
            messages=messages,
            tools=[tool.model_dump() for tool in payload.tools or []],
            tool_choice=payload.tool_choice,
            overrides=overrides,
        )
    finally:
        # The reply is complete before the first chunk is sent: the slot is not needed for it.
        answer_slot_release(user=user, token=slot)
    if payload.stream:
        include_usage = bool(payload.stream_options and payload.stream_options.include_usage)
        return sse_response(_passthrough_chunks(outcome, include_usage))
    if outcome.status != Turn.Status.DONE:
        return _error(502, outcome.error, "server_error", "model_error")
    return passthrough_body(outcome)


@openai_api.post(
    "/chat/completions",
    summary="Create a chat completion",
    openapi_extra={"responses": COMPLETION_RESPONSES},
    auth=OPENAI_STREAMING_AUTH,
)
async def chat_completions(
    request: HttpRequest, payload: ChatCompletionIn
) -> HttpResponse | StreamingHttpResponse | dict[str, Any]:
    """`max_tokens` (or `max_completion_tokens`) may lower the catalogue's output limit, never raise
    it; `temperature` applies as given. With `tools`, the caller's tools are passed through to a
    model that calls tools natively and its tool calls come back; without, our own agent answers
    (its own tools included)."""
    overrides = Overrides(
        max_tokens=payload.max_completion_tokens or payload.max_tokens,
        temperature=payload.temperature,
    )
    if payload.tools:
        return await _with_callers_tools(request, payload, overrides)
    if payload.tool_choice is not None:
        raise services.InvalidInput("'tool_choice' needs 'tools': send the tools to choose from.")
    prompt = prompt_from(payload.messages)
    requested = requested_model(payload.model)
    user = caller(request)
    # On the database threads, as the key check was (OPENAI_STREAMING_AUTH): the request's own
    # thread never opens a connection, so a burst of requests needs no more than those threads.
    turn, model, slot = await db_sync_to_async(_turn_start)(user, prompt, requested)
    if payload.stream:
        include_usage = bool(payload.stream_options and payload.stream_options.include_usage)
        chunks = _chunks(turn.pk, model, requested, prompt, include_usage, overrides)
        return sse_response(released_after(chunks, user=user, token=slot))
    try:
        outcome = await turn_run(
            turn_id=turn.pk,
            emit=emit_nothing,
            requested_model=requested,
            prompt=prompt,
            overrides=overrides,
        )
    finally:
        answer_slot_release(user=user, token=slot)
    if outcome.status != Turn.Status.DONE:
        return _error(502, outcome.error, "server_error", "model_error")
    return completion_body(outcome)
