"""POST /api/search as daphne runs it: the ASGI application in this process, the key check and
the search on the process's database threads (chatbot.runtime.db), which keep their
connections. The sync test client of test_search_api.py runs the same code inline instead."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db.backends.signals import connection_created
from django.test import AsyncClient

from tests.api.conftest import asgi_client, bearer, key_for  # noqa: F401 (fixtures)
from tests.knowledge.test_search import make_knowledge_base

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def kb(cast: dict[str, User]) -> None:
    await sync_to_async(make_knowledge_base)()


async def search(client: httpx.AsyncClient, query: str = "reset my password") -> httpx.Response:
    return await client.post("/api/search", json={"query": query, "k": 3})


async def test_a_key_in_either_header_searches_what_the_owner_may_see(
    kb: None,
    alice: User,
    key_for: Callable[[User], str],  # noqa: F811
    asgi_client: Callable[..., httpx.AsyncClient],  # noqa: F811
) -> None:
    key = await sync_to_async(key_for)(alice)
    for headers in (bearer(key), {"X-API-Key": key}):
        async with asgi_client(**headers) as client:
            response = await search(client, "password reset payroll vault leaver")
        assert response.status_code == 200, response.text
        hits = response.json()["hits"]
        assert hits and {hit["collection"]["name"] for hit in hits} == {"Help centre"}


async def test_a_signed_in_browser_searches_and_nora_is_refused(
    kb: None, alice: User, nora: User
) -> None:
    browser = AsyncClient()
    await browser.aforce_login(alice)
    response = await browser.post(
        "/api/search", data={"query": "VPN gateway"}, content_type="application/json"
    )
    assert response.status_code == 200
    assert response.json()["hits"][0]["document"]["external_id"] == "vpn"

    await browser.aforce_login(nora)
    refused = await browser.post(
        "/api/search", data={"query": "VPN"}, content_type="application/json"
    )
    assert refused.status_code == 403 and "no access" in refused.json()["detail"]


async def test_nora_and_anonymous_callers_are_refused(
    kb: None,
    nora: User,
    key_for: Callable[[User], str],  # noqa: F811
    asgi_client: Callable[..., httpx.AsyncClient],  # noqa: F811
) -> None:
    key = await sync_to_async(key_for)(nora)
    async with asgi_client(**bearer(key)) as client:
        refused = await search(client)
    assert refused.status_code == 403 and "no access" in refused.json()["detail"]
    async with asgi_client() as client:
        assert (await search(client)).status_code == 401
    async with asgi_client(**bearer("sk-sa-not-a-key")) as client:
        assert (await search(client)).status_code == 401


async def test_searches_reuse_the_database_threads_connections(
    kb: None,
    alice: User,
    key_for: Callable[[User], str],  # noqa: F811
    asgi_client: Callable[..., httpx.AsyncClient],  # noqa: F811
) -> None:
    """Each request's own thread opened a Postgres connection of its own, per search."""
    key = await sync_to_async(key_for)(alice)
    opened: list[Any] = []

    def count(sender: Any, connection: Any, **kwargs: Any) -> None:
        opened.append(connection)

    async with asgi_client(**bearer(key)) as client:
        assert (await search(client)).status_code == 200  # a database thread connects
        connection_created.connect(count)
        try:
            for _ in range(5):
                assert (await search(client)).status_code == 200
        finally:
            connection_created.disconnect(count)
    assert opened == []
