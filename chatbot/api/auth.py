"""Who is calling the API: a signed-in browser (session + CSRF) or a program (API key).

Every caller must also hold the chat permission. Authentication failures answer 401 (an expired
or revoked key says so), a known caller without the permission, or a key without the scope the
endpoint needs, answers 403: the error handlers of each API word them. Once the caller is known,
the request counts against their rate limit (and their key's): over it, a `LimitExceeded` that
the handlers answer with 429 and `Retry-After`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.http import HttpRequest
from ninja.errors import AuthenticationError, AuthorizationError
from ninja.security import APIKeyCookie, APIKeyHeader, HttpBearer
from ninja.utils import check_csrf

from chatbot.accounts import roles
from chatbot.accounts.limits import request_allow
from chatbot.accounts.services import API_KEY_PREFIX, KeyRefused, api_key_allows, api_key_check
from chatbot.agent.routing import key_residency_set
from chatbot.models import ApiKey
from chatbot.runtime.db import db_sync_to_async

NO_ACCESS = "Your account has no access to the assistant. Ask an admin to give you the agent role."
NO_CREDENTIALS = (
    "Authentication required: sign in, or send an API key as "
    f"'Authorization: Bearer {API_KEY_PREFIX}…' or in an 'X-API-Key' header."
)
BAD_KEY = (
    "The API key is not valid: it may be mistyped or deleted. Create a new one on your API keys "
    "page (the user menu) or with `manage.py createapikey`."
)
CSRF_FAILED = (
    "CSRF check failed: a browser session must send the 'X-CSRFToken' header with the value "
    "of the csrftoken cookie. Programs should use an API key instead."
)


# Endpoints a key needs the "search" scope for (by ninja's url name); every other endpoint needs
# "chat", except that a key with "read_only" may make any GET.
SEARCH_VIEWS = frozenset({"api:search"})


class KeyRefusedError(AuthenticationError):
    """A real key that may not be used any more; its message says why (expired, revoked)."""


def _with_chat_permission(user: AbstractBaseUser | AnonymousUser) -> User:
    """The caller is known; without the chat permission they are refused with a 403."""
    if not isinstance(user, User) or not user.has_perm(roles.USE_CHAT):
        raise AuthorizationError(message=NO_ACCESS)
    return user


def _scope_of(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is not None and match.view_name in SEARCH_VIEWS:
        return ApiKey.Scope.SEARCH
    return ApiKey.Scope.CHAT


def _key_caller(request: HttpRequest, plaintext: str) -> User | None:
    """The key's owner, once the key is usable here, its scopes allow the endpoint, and the
    request is within the owner's and the key's rate limits."""
    try:
        key = api_key_check(plaintext.strip())
    except KeyRefused as exc:
        raise KeyRefusedError(message=str(exc)) from exc
    if key is None:
        return None
    user = _with_chat_permission(key.user)
    scope = _scope_of(request)
    if not api_key_allows(key, method=request.method or "GET", scope=scope):
        raise AuthorizationError(
            message=(
                f"This API key may not use this endpoint: it needs the '{scope}' scope and the "
                f"key has {', '.join(key.scopes) or 'none'}. Create a key with that scope."
            )
        )
    request_allow(user=user, key=key)
    request.api_key = key  # type: ignore[attr-defined]
    key_residency_set(key)  # the turns this request runs keep to the key's regions
    return user


class ApiKeyBearer(HttpBearer):
    """`Authorization: Bearer sk-sa-…`, the header OpenAI-style clients send.

    `on_db_threads=True` (for async routes only: ninja then awaits `authenticate`) checks the key
    on the process's database threads (chatbot.runtime.db) instead of the request's own thread,
    which would open a Postgres connection per request: a burst of streamed answers would want as
    many connections as requests."""

    def __init__(self, *, on_db_threads: bool = False) -> None:
        super().__init__()
        self.is_async = on_db_threads

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        if self.is_async:
            return db_sync_to_async(_key_caller)(request, token)
        return _key_caller(request, token)


class ApiKeyInHeader(APIKeyHeader):
    """`X-API-Key: sk-sa-…`, for tools that cannot set a bearer token (`on_db_threads`: as for
    `ApiKeyBearer`)."""

    param_name = "X-API-Key"

    def __init__(self, *, on_db_threads: bool = False) -> None:
        super().__init__()
        self.is_async = on_db_threads

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        if not key:
            return None
        if self.is_async:
            return db_sync_to_async(_key_caller)(request, key)
        return _key_caller(request, key)


class ChatSession(APIKeyCookie):
    """The browser's Django session. CSRF is checked only once a session user is found, so an
    anonymous request gets the 401 it deserves rather than a CSRF error."""

    param_name = settings.SESSION_COOKIE_NAME

    def __init__(self, *, on_db_threads: bool = False) -> None:
        super().__init__()
        self.is_async = on_db_threads

    def __call__(self, request: HttpRequest) -> Any:
        # Reading the session and its user are queries: with `on_db_threads`, all of it runs on
        # the database threads (an awaitable for ninja's async routes).
        if self.is_async:
            return db_sync_to_async(super().__call__)(request)
        return super().__call__(request)

    def _get_key(self, request: HttpRequest) -> str | None:
        if not request.user.is_authenticated:
            return None
        if check_csrf(request) is not None:
            raise AuthorizationError(message=CSRF_FAILED)
        return request.COOKIES.get(self.param_name)

    def authenticate(self, request: HttpRequest, key: str | None) -> User | None:
        if key is None or not request.user.is_authenticated:
            return None
        # The person themself: no scopes to check, the person's own rate limit still counts.
        user = _with_chat_permission(request.user)
        request_allow(user=user)
        return user


def credentials_sent(request: HttpRequest) -> bool:
    return bool(request.headers.get("Authorization") or request.headers.get("X-API-Key"))


def caller(request: HttpRequest) -> User:
    """The user the auth classes above identified for this request."""
    user: Any = getattr(request, "auth", None)
    assert isinstance(user, User), "route reached without authentication"
    return user


# Programs first: a request with a key never needs a CSRF token.
API_AUTH = [ApiKeyBearer(), ApiKeyInHeader(), ChatSession()]
OPENAI_AUTH = [ApiKeyBearer()]
# For async routes: the key checked on the database threads (answers streamed, many at once, and
# the model list, whose request thread would otherwise open a Postgres connection each time).
OPENAI_STREAMING_AUTH = [ApiKeyBearer(on_db_threads=True)]
# API_AUTH for async routes that do their work on the database threads: the request's own thread
# would open a Postgres connection for each request (and its first statements would meet a new
# server process's empty caches).
API_AUTH_ON_DB_THREADS = [
    ApiKeyBearer(on_db_threads=True),
    ApiKeyInHeader(on_db_threads=True),
    ChatSession(on_db_threads=True),
]
