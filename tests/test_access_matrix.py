"""Every route in the project refuses nora (no role) and anonymous visitors.

The routes are discovered from the URL configuration, so a new view that forgets its permission
check fails here without anyone having to remember to add a test.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from chatbot.chat import services
from chatbot.models import Turn

# Routes that are public on purpose.
PUBLIC = {
    "/accounts/login/",
    "/accounts/logout/",
    "/healthz",
    "/api/docs",
    "/api/openapi.json",
    # What /v1 accepts and answers (no docs page): public like /api's, it holds no data.
    "/v1/openapi.json",
}
PUBLIC_PREFIXES = ("/static/",)
# django-ninja's API roots have no view of their own: they answer 404 to everyone.
NO_VIEW = {"/api/", "/v1/"}
REFUSED = {401, 403, 405}


def _walk(patterns: list[URLPattern | URLResolver], prefix: str = "") -> Iterator[str]:
    for entry in patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, route)
        else:
            yield route


def _concrete(route: str, ids: dict[str, int]) -> str:
    route = route.lstrip("^").rstrip("$").replace("\\Z", "")

    def value(match: re.Match[str]) -> str:
        name = match.group(2) or match.group(1)
        return str(ids.get(name, ids["default"]))

    route = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(ids.get(m.group(1), ids["default"])), route)
    route = re.sub(r"\(\?P<(\w+)>[^)]*\)|\{(\w+)\}", value, route)
    return "/" + route


@pytest.fixture
def urls(alice) -> list[str]:
    conversation = services.conversation_create(owner=alice)
    turn = services.turn_create(conversation=conversation, user_text="q")
    Turn.objects.filter(pk=turn.pk).update(status=Turn.Status.DONE, answer="a")
    ids = {
        "conversation_id": conversation.pk,
        "turn_id": turn.pk,
        "pk": conversation.pk,
        "default": conversation.pk,
    }
    found = sorted({_concrete(r, ids) for r in _walk(get_resolver().url_patterns)})
    return [
        u
        for u in found
        if u not in PUBLIC and u not in NO_VIEW and not u.startswith(PUBLIC_PREFIXES)
    ]


@pytest.mark.django_db
def test_it_discovers_the_products_routes(urls) -> None:
    # Guard against the walk silently finding nothing.
    assert any(u.startswith("/chat/") for u in urls)
    assert any(u.startswith("/api/") for u in urls)
    assert any(u.startswith("/v1/") for u in urls)
    assert any(u.startswith("/console/") for u in urls)


@pytest.mark.django_db
def test_it_refuses_nora_on_every_route(client_as, nora, urls) -> None:
    client = client_as(nora)
    client.raise_request_exception = True
    failures = []
    for url in urls:
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            if response.status_code not in REFUSED:
                failures.append(f"{method.upper()} {url} -> {response.status_code}")
    assert not failures, "nora reached: " + ", ".join(failures)


@pytest.mark.django_db
def test_it_refuses_anonymous_visitors_on_every_route(urls) -> None:
    client = Client()
    failures = []
    for url in urls:
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            to_login = response.status_code == 302 and "/accounts/login/" in response["Location"]
            if response.status_code not in REFUSED and not to_login:
                failures.append(f"{method.upper()} {url} -> {response.status_code}")
    assert not failures, "anonymous reached: " + ", ".join(failures)
