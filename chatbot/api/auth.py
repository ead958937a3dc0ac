"""Who is calling the API: a signed-in browser (session + CSRF) or a program (API key).

Every caller must also hold the chat permission. Authentication failures answer 401, a known
caller without the permission answers 403: the error handlers of each API word them.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.http import HttpRequest
from ninja.errors import AuthorizationError
from ninja.security import APIKeyCookie, APIKeyHeader, HttpBearer
from ninja.utils import check_csrf

from chatbot.accounts import roles
from chatbot.accounts.services import API_KEY_PREFIX, api_key_authenticate

NO_ACCESS = "Your account has no access to the assistant. Ask an admin to give you the agent role."
NO_CREDENTIALS = (
    "Authentication required: sign in, or send an API key as "
    f"'Authorization: Bearer {API_KEY_PREFIX}…' or in an 'X-API-Key' header."
)
BAD_KEY = "The API key is not valid: it may be mistyped or revoked. Create a new one with `manage.py createapikey`."
CSRF_FAILED = (
    "CSRF check failed: a browser session must send the 'X-CSRFToken' header with the value "
    "of the csrftoken cookie. Programs should use an API key instead."
)


def _with_chat_permission(user: AbstractBaseUser | AnonymousUser) -> User:
    """The caller is known; without the chat permission they are refused with a 403."""
    if not isinstance(user, User) or not user.has_perm(roles.USE_CHAT):
        raise AuthorizationError(message=NO_ACCESS)
    return user


class ApiKeyBearer(HttpBearer):
    """`Authorization: Bearer sk-sa-…`, the header OpenAI-style clients send."""

    def authenticate(self, request: HttpRequest, token: str) -> User | None:
        user = api_key_authenticate(token.strip())
        return _with_chat_permission(user) if user is not None else None


class ApiKeyInHeader(APIKeyHeader):
    """`X-API-Key: sk-sa-…`, for tools that cannot set a bearer token."""

    param_name = "X-API-Key"

    def authenticate(self, request: HttpRequest, key: str | None) -> User | None:
        if not key:
            return None
        user = api_key_authenticate(key.strip())
        return _with_chat_permission(user) if user is not None else None


class ChatSession(APIKeyCookie):
    """The browser's Django session. CSRF is checked only once a session user is found, so an
    anonymous request gets the 401 it deserves rather than a CSRF error."""

    param_name = settings.SESSION_COOKIE_NAME

    def _get_key(self, request: HttpRequest) -> str | None:
        if not request.user.is_authenticated:
            return None
        if check_csrf(request) is not None:
            raise AuthorizationError(message=CSRF_FAILED)
        return request.COOKIES.get(self.param_name)

    def authenticate(self, request: HttpRequest, key: str | None) -> User | None:
        if key is None or not request.user.is_authenticated:
            return None
        return _with_chat_permission(request.user)


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
