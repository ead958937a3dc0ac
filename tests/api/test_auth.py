"""Who may call /api/: sessions and API keys with the chat permission; nobody else."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from chatbot.accounts.services import api_key_create, api_key_revoke
from chatbot.chat import services
from tests.api.conftest import bearer, finished_turn

pytestmark = pytest.mark.django_db

# Every route of /api/, with the body a well-behaved caller would send.
ROUTES = [
    ("get", "/api/conversations", None),
    ("post", "/api/conversations", {"title": "Printers"}),
    ("get", "/api/conversations/{conversation}", None),
    ("delete", "/api/conversations/{conversation}", None),
    ("post", "/api/conversations/{conversation}/messages", {"message": "Hi"}),
    ("post", "/api/turns/{turn}/feedback", {"rating": 1}),
]
ROUTE_IDS = [f"{method} {path}" for method, path, _ in ROUTES]


@pytest.fixture
def alices_ids(alice) -> dict[str, int]:
    conversation = services.conversation_create(owner=alice)
    turn = finished_turn(conversation)
    return {"conversation": conversation.pk, "turn": turn.pk}


def _call(client: Client, method: str, path: str, body: object, ids: dict[str, int], **headers):
    url = path.format(**ids)
    if body is None:
        return getattr(client, method)(url, headers=headers)
    return getattr(client, method)(
        url, data=json.dumps(body), content_type="application/json", headers=headers
    )


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=ROUTE_IDS)
def test_it_refuses_anonymous_callers_with_401(method, path, body, alices_ids) -> None:
    response = _call(Client(), method, path, body, alices_ids)

    assert response.status_code == 401
    assert "Authentication required" in response.json()["detail"]
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=ROUTE_IDS)
def test_it_refuses_nora_by_session_with_403(
    method, path, body, nora, client_as, alices_ids
) -> None:
    response = _call(client_as(nora), method, path, body, alices_ids)

    assert response.status_code == 403
    assert "no access" in response.json()["detail"]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=ROUTE_IDS)
def test_it_refuses_nora_by_api_key_with_403(method, path, body, nora, key_for, alices_ids) -> None:
    response = _call(Client(), method, path, body, alices_ids, **bearer(key_for(nora)))

    assert response.status_code == 403
    assert "no access" in response.json()["detail"]


def test_it_refuses_a_mistyped_or_revoked_key_with_401(alice) -> None:
    new = api_key_create(user=alice)
    api_key_revoke(key=new.key)
    for key in [new.plaintext, "sk-sa-nothing.like-this", "not-even-our-format"]:
        response = Client().get("/api/conversations", headers=bearer(key))
        assert response.status_code == 401, key
        assert "not valid" in response.json()["detail"]
    response = Client().get("/api/conversations", headers={"X-API-Key": "sk-sa-bad.key"})
    assert response.status_code == 401


def test_it_accepts_a_key_as_bearer_token_or_x_api_key_header(alice, key_for) -> None:
    key = key_for(alice)
    services.conversation_create(owner=alice, title="Mine")

    by_bearer = Client().get("/api/conversations", headers=bearer(key))
    by_header = Client().get("/api/conversations", headers={"X-API-Key": key})

    assert by_bearer.status_code == by_header.status_code == 200
    assert [c["title"] for c in by_bearer.json()["items"]] == ["Mine"]
    assert by_header.json() == by_bearer.json()


def test_it_needs_no_csrf_token_with_an_api_key(alice, key_for) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/api/conversations",
        data={"title": "From a script"},
        content_type="application/json",
        headers=bearer(key_for(alice)),
    )

    assert response.status_code == 201


def test_it_requires_the_csrf_token_for_a_session_write(alice) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    refused = client.post("/api/conversations", data={}, content_type="application/json")
    # A page of ours sets this cookie in a real browser; the header must repeat it.
    token = "a" * 32
    client.cookies["csrftoken"] = token
    accepted = client.post(
        "/api/conversations",
        data={},
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )

    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    assert accepted.status_code == 201


def test_it_lets_other_roles_with_the_chat_permission_in(rita, adam, client_as) -> None:
    for user in (rita, adam):
        assert client_as(user).get("/api/conversations").status_code == 200
