"""Helpers for the API tests: API keys for the cast, an in-process ASGI client, SSE parsing."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User

from chatbot.accounts.services import api_key_create
from chatbot.agent import records
from chatbot.chat import services
from chatbot.llm.types import Usage
from chatbot.models import Conversation, Turn
from chatbot.telemetry.tracing import Tracer


@pytest.fixture
def key_for(db: None) -> Callable[[User], str]:
    def make(user: User) -> str:
        return api_key_create(user=user, name="tests").plaintext

    return make


@pytest.fixture
def asgi_client() -> Callable[..., httpx.AsyncClient]:
    """An httpx client that talks to the real ASGI application in this process.

    httpx's ASGITransport collects the whole body before returning it, so streams are read in
    full; the disconnect test drives the ASGI app directly to see pieces arrive one by one.
    """
    from chatbot.asgi import application

    def make(**headers: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application),
            base_url="http://testserver",
            headers=headers,
        )

    return make


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def sse_events(body: str) -> list[tuple[str, Any]]:
    """(event name, decoded data) for each server-sent event in a body."""
    events: list[tuple[str, Any]] = []
    for block in body.split("\n\n"):
        if not block.strip():
            continue
        name, data = "message", ""
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data += line[len("data: ") :]
        events.append((name, json.loads(data) if data != "[DONE]" else data))
    return events


def finished_turn(
    conversation: Conversation, text: str = "How do I reset a password?", answer: str = "Ask IT."
) -> Turn:
    """A turn as the turn loop leaves it, recorded through the same services."""
    turn = services.turn_create(conversation=conversation, user_text=text)
    result = records.TurnResult(
        status=Turn.Status.DONE,
        answer=answer,
        usage=Usage(input_tokens=12, output_tokens=5),
        cost=Decimal("0.00002200"),
        ttft_ms=12.5,
        total_ms=40.0,
    )
    records.turn_finish(turn_id=turn.pk, result=result, tracer=Tracer())
    turn.refresh_from_db()
    return turn


@pytest.fixture
def alice_key(alice: User, key_for: Callable[[User], str]) -> str:
    return key_for(alice)
