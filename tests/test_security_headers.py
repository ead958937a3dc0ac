"""Every response carries the security headers: pages, the sign-in page and the APIs, in the
sync path (the test client) and the async one (daphne)."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.test import AsyncClient, Client, RequestFactory

from chatbot.runtime.middleware import InlineHooks

POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def _policy(header: str) -> dict[str, str]:
    directives = (part.strip().split(" ", 1) for part in header.split(";") if part.strip())
    return {name: value for name, value in directives}


def _assert_headers(response: HttpResponseBase, status: int) -> None:
    assert response.status_code == status
    assert _policy(response["Content-Security-Policy"]) == POLICY
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"


CASES = pytest.mark.parametrize(
    ("path", "signed_in", "status"),
    [
        ("/accounts/login/", False, 200),
        ("/chat/", True, 200),
        ("/chat/", False, 302),
        ("/api/conversations", True, 200),
        ("/v1/models", False, 401),
    ],
)


@pytest.mark.django_db
@CASES
def test_every_response_carries_the_security_headers(
    alice: User, path: str, signed_in: bool, status: int
) -> None:
    client = Client()
    if signed_in:
        client.force_login(alice)

    response = client.get(path)

    _assert_headers(response, status)


@pytest.mark.django_db(transaction=True)
@CASES
async def test_the_async_path_carries_them_too(
    alice: User, path: str, signed_in: bool, status: int
) -> None:
    """As daphne serves them: the middleware whose hooks run in the event loop
    (chatbot.runtime.middleware) still set every header, sign people in and redirect the rest."""
    client = AsyncClient()
    if signed_in:
        await client.aforce_login(alice)

    response = await client.get(path)

    _assert_headers(response, status)


@pytest.mark.django_db(transaction=True)
async def test_a_post_without_its_csrf_token_is_refused_on_the_async_path(alice: User) -> None:
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(alice)
    page = await client.get("/chat/")
    token = page.cookies["csrftoken"].value if "csrftoken" in page.cookies else ""

    refused = await client.post("/chat/new/")
    assert refused.status_code == 403

    allowed = await client.post("/chat/new/", headers={"X-CSRFToken": token})
    assert allowed.status_code in (200, 302), allowed.status_code


async def test_inline_hooks_run_in_the_event_loop_without_a_thread_hop() -> None:
    seen: list[int] = []

    class Recording(InlineHooks):
        def process_request(self, request: HttpRequest) -> None:
            seen.append(threading.get_ident())

        def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
            seen.append(threading.get_ident())
            return response

    async def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")

    middleware = Recording(view)
    response = await middleware.__acall__(RequestFactory().get("/"))

    assert response.content == b"ok"
    assert seen == [threading.get_ident()] * 2
