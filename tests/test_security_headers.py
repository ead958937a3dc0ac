"""Every response carries the security headers: pages, the sign-in page and the APIs."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

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


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "signed_in", "status"),
    [
        ("/accounts/login/", False, 200),
        ("/chat/", True, 200),
        ("/chat/", False, 302),
        ("/api/conversations", True, 200),
        ("/v1/models", False, 401),
    ],
)
def test_every_response_carries_the_security_headers(
    alice: User, path: str, signed_in: bool, status: int
) -> None:
    client = Client()
    if signed_in:
        client.force_login(alice)

    response = client.get(path)

    assert response.status_code == status
    assert _policy(response["Content-Security-Policy"]) == POLICY
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"
