"""POST /api/search: ranked chunks from the collections the caller's groups may see."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from chatbot.accounts.services import api_key_create
from chatbot.llm.embeddings import LocalEmbeddings
from chatbot.models import Chunk, Document
from tests.knowledge.test_search import KnowledgeBase, make_knowledge_base

pytestmark = pytest.mark.django_db

QUERY = "password reset payroll vault leaver"


@pytest.fixture
def kb(cast: dict[str, User]) -> KnowledgeBase:
    return make_knowledge_base()


def post(client: Client, body: Any, **headers: str) -> Any:
    return client.post(
        "/api/search", data=json.dumps(body), content_type="application/json", headers=headers
    )


def test_it_returns_ranked_hits_with_their_documents(
    kb: KnowledgeBase, alice: User, client_as: Callable[[User], Client]
) -> None:
    response = post(client_as(alice), {"query": "how do I reset my password", "k": 2})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["query"] == "how do I reset my password"
    assert len(body["hits"]) == 2
    top = body["hits"][0]
    assert top["rank"] == 1 and top["score"] > 0
    scores = [hit["rerank_score"] for hit in body["hits"]]
    assert None not in scores and scores == sorted(scores, reverse=True), "reranked, best first"
    assert top["document"]["external_id"] == "pw-reset"
    assert top["document"]["title"] == "Reset a password"
    assert top["document"]["url"] == "https://help.example.com/pw-reset"
    assert top["collection"] == {"id": kb.help.pk, "name": "Help centre"}
    assert "30 minutes" in top["text"]
    assert body["hits"][0]["score"] >= body["hits"][1]["score"]


def test_it_gives_alice_only_her_groups_collections(
    kb: KnowledgeBase, alice: User, client_as: Callable[[User], Client]
) -> None:
    hits = post(client_as(alice), {"query": QUERY, "k": 50}).json()["hits"]
    assert hits and {h["collection"]["name"] for h in hits} == {"Help centre"}


def test_it_gives_a_knowledge_admin_every_collection(
    kb: KnowledgeBase, adam: User, client_as: Callable[[User], Client]
) -> None:
    hits = post(client_as(adam), {"query": QUERY, "k": 50}).json()["hits"]
    assert {h["collection"]["name"] for h in hits} == {"Help centre", "Admin handbook", "Vault"}


def test_it_ignores_requested_collections_the_caller_cannot_see(
    kb: KnowledgeBase, alice: User, client_as: Callable[[User], Client]
) -> None:
    body = {"query": QUERY, "k": 50, "collections": [kb.admin.pk, kb.hidden.pk]}
    response = post(client_as(alice), body)
    assert response.status_code == 200
    assert response.json()["hits"] == []


def test_it_narrows_to_requested_collections(
    kb: KnowledgeBase, adam: User, client_as: Callable[[User], Client]
) -> None:
    hits = post(client_as(adam), {"query": QUERY, "k": 50, "collections": [kb.admin.pk]}).json()
    assert {h["collection"]["name"] for h in hits["hits"]} == {"Admin handbook"}


def test_it_accepts_an_api_key(kb: KnowledgeBase, alice: User) -> None:
    key = api_key_create(user=alice, name="tests").plaintext
    response = post(Client(), {"query": "VPN"}, Authorization=f"Bearer {key}")
    assert response.status_code == 200
    assert response.json()["hits"][0]["document"]["external_id"] == "vpn"


def test_it_refuses_nora_with_403(
    kb: KnowledgeBase, nora: User, client_as: Callable[[User], Client]
) -> None:
    response = post(client_as(nora), {"query": "password"})
    assert response.status_code == 403
    assert "no access" in response.json()["detail"]


def test_it_refuses_a_user_without_the_knowledge_permission_with_403(
    kb: KnowledgeBase, client_as: Callable[[User], Client]
) -> None:
    # Chat without knowledge access: the route checks its own permission, not only the API's.
    user = User.objects.create_user("chatonly", password="x-password-1")
    user.user_permissions.add(Permission.objects.get(codename="use_chat"))
    response = post(client_as(user), {"query": "password"})
    assert response.status_code == 403
    assert "knowledge base" in response.json()["detail"]


def test_it_refuses_anonymous_callers_with_401(kb: KnowledgeBase) -> None:
    response = post(Client(), {"query": "password"})
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"query": ""}, "query", "must not be empty"),
        ({"query": "   "}, "query", "must not be empty"),
        ({}, "query", "is required"),
        ({"query": 5}, "query", "must be text"),
        ({"query": "vpn", "k": 0}, "k", "greater than or equal to 1"),
        ({"query": "vpn", "k": 51}, "k", "less than or equal to 50"),
        ({"query": "vpn", "k": "many"}, "k", "whole number"),
        ({"query": "vpn", "collections": "all"}, "collections", "must be a list"),
        ({"query": "x" * 2001}, "query", "at most 2000"),
        ({"query": "vpn", "per_document": 0}, "per_document", "greater than or equal to 1"),
    ],
)
def test_it_explains_bad_input_with_422(
    kb: KnowledgeBase,
    alice: User,
    client_as: Callable[[User], Client],
    body: dict[str, Any],
    field: str,
    words: str,
) -> None:
    response = post(client_as(alice), body)
    assert response.status_code == 422, response.content
    detail = response.json()["detail"]
    assert f"'{field}'" in detail and words in detail


def test_it_explains_a_body_that_is_not_json_with_400(
    kb: KnowledgeBase, alice: User, client_as: Callable[[User], Client]
) -> None:
    response = client_as(alice).post(
        "/api/search", data="query=vpn", content_type="application/json"
    )
    assert response.status_code == 400
    assert "not a valid JSON object" in response.json()["detail"]


def test_it_lists_one_passage_a_document_first_unless_asked_otherwise(
    kb: KnowledgeBase, alice: User, client_as: Callable[[User], Client]
) -> None:
    """A long document's passages would fill the list: by default each document gets one slot
    among the k while others have passages to offer; `per_document: null` keeps them together."""
    document = Document.objects.get(external_id="pw-reset")
    more = [
        "A password reset link is single use; request a new password reset link when it expired.",
        "Reset links for a forgotten password are sent to the work email, never a private one.",
    ]
    for ordinal, (text, vector) in enumerate(
        zip(more, LocalEmbeddings().embed_documents(more), strict=True), start=1
    ):
        Chunk.objects.create(
            document=document,
            collection=document.collection,
            ordinal=ordinal,
            heading=document.title,
            text=text,
            embedding=vector,
        )
    client = client_as(alice)
    question = "how do I reset a forgotten password with the reset link"

    together = post(client, {"query": question, "k": 3, "per_document": None}).json()["hits"]
    assert [h["document"]["external_id"] for h in together] == ["pw-reset"] * 3

    spread = post(client, {"query": question, "k": 3}).json()["hits"]
    documents = [h["document"]["external_id"] for h in spread]
    assert documents[0] == "pw-reset" and len(set(documents)) == 3, documents
    assert spread[0]["chunk_id"] == together[0]["chunk_id"], "the best passage stays first"

    two = post(client, {"query": question, "k": 3, "per_document": 2}).json()["hits"]
    assert [h["document"]["external_id"] for h in two][:2] == ["pw-reset", "pw-reset"]
    assert two[2]["document"]["external_id"] != "pw-reset"
