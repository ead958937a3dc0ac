"""The product's API at /api/ (OpenAPI docs at /api/docs). Errors are `{"detail": "..."}`."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from ninja.errors import AuthenticationError, HttpError, ValidationError

from chatbot.accounts.limits import LimitExceeded
from chatbot.api import conversations, messages, search
from chatbot.api.auth import API_AUTH, BAD_KEY, NO_CREDENTIALS, KeyRefusedError, credentials_sent
from chatbot.api.contract import API_ERRORS, DocumentedAPI
from chatbot.api.errors import (
    ObjectParser,
    is_unparsable_body,
    too_big,
    unparsable_message,
    validation_errors,
)
from chatbot.chat.services import InvalidInput
from chatbot.llm.types import NoModelAvailable
from chatbot.models import Conversation, Turn

api = DocumentedAPI(
    title="Support assistant API",
    errors=API_ERRORS,
    version="1",
    urls_namespace="api",
    parser=ObjectParser(),
    auth=API_AUTH,
    description=(
        "Conversations with the support assistant. Sign in (browser session; send the CSRF "
        "token on writes) or send an API key: `Authorization: Bearer sk-sa-…` or `X-API-Key`. "
        "Every route needs the chat permission (401 without credentials, 403 without access); "
        "a key reaches only the routes its scopes allow (403). Over a rate limit, the daily token "
        "quota or the cap on answers at once: 429 with `Retry-After` (seconds)."
    ),
)
api.add_router("/", conversations.router)
api.add_router("/", messages.router)
api.add_router("/", search.router)


def _detail(request: HttpRequest, message: str, status: int) -> HttpResponse:
    return api.create_response(request, {"detail": message}, status=status)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    if isinstance(exc, KeyRefusedError):
        message = exc.message
    else:
        message = BAD_KEY if credentials_sent(request) else NO_CREDENTIALS
    response = _detail(request, message, 401)
    response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


@api.exception_handler(LimitExceeded)
def _limited(request: HttpRequest, exc: LimitExceeded) -> HttpResponse:
    response = api.create_response(
        request,
        {"detail": exc.message, "limit": exc.kind, "retry_after": exc.retry_after},
        status=429,
    )
    response["Retry-After"] = str(exc.retry_after)
    return response


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if is_unparsable_body(exc):
        return _detail(request, unparsable_message(exc), 400)
    return _detail(request, exc.message, exc.status_code)


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return _detail(request, too_big(), 413)


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    summary, fields = validation_errors(exc.errors)
    return api.create_response(request, {"detail": summary, "errors": fields}, status=422)


@api.exception_handler(InvalidInput)
def _invalid_input(request: HttpRequest, exc: InvalidInput) -> HttpResponse:
    return _detail(request, str(exc), 400)


@api.exception_handler(Conversation.DoesNotExist)
def _no_conversation(request: HttpRequest, exc: Exception) -> HttpResponse:
    return _detail(request, "Conversation not found.", 404)


@api.exception_handler(Turn.DoesNotExist)
def _no_turn(request: HttpRequest, exc: Exception) -> HttpResponse:
    return _detail(request, "Turn not found.", 404)


@api.exception_handler(NoModelAvailable)
def _no_model(request: HttpRequest, exc: NoModelAvailable) -> HttpResponse:
    return _detail(request, exc.user_message, 404)
