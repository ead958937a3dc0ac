"""Asking questions through /api/: JSON answers, server-sent events, failures and disconnects."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from chatbot.chat import services
from chatbot.models import Conversation, Span, Turn
from tests.api.conftest import bearer, sse_events

pytestmark = pytest.mark.django_db(transaction=True)

ANSWER = "The link expires after 30 minutes."


async def _conversation(user) -> Conversation:
    return await sync_to_async(services.conversation_create)(owner=user)


def _url(conversation: Conversation) -> str:
    return f"/api/conversations/{conversation.pk}/messages"


async def test_it_answers_a_message_as_json(alice, alice_key, fake_endpoint, asgi_client) -> None:
    endpoint = await sync_to_async(fake_endpoint)([ANSWER])
    conversation = await _conversation(alice)

    async with asgi_client(**bearer(alice_key)) as client:
        response = await client.post(
            _url(conversation), json={"message": "How long is the reset link valid?"}
        )

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "done"
    assert body["answer"] == ANSWER
    assert body["error"] == ""
    assert body["model"] == "fake-model"
    turn = await Turn.objects.aget(pk=body["turn_id"])
    assert turn.conversation_id == conversation.pk
    assert turn.user_text == "How long is the reset link valid?"
    assert turn.status == Turn.Status.DONE and turn.answer == ANSWER
    assert turn.endpoint_id == endpoint.pk
    assert body["usage"] == {"input_tokens": turn.tokens_in, "output_tokens": turn.tokens_out}
    assert turn.tokens_out > 0
    assert await Span.objects.filter(turn=turn).acount() == 2


async def test_it_answers_a_signed_in_browser(alice, fake_endpoint) -> None:
    await sync_to_async(fake_endpoint)([ANSWER])
    conversation = await _conversation(alice)
    client = AsyncClient()
    await client.aforce_login(alice)

    response = await client.post(
        _url(conversation), data={"message": "Reset link?"}, content_type="application/json"
    )

    assert response.status_code == 200
    assert response.json()["answer"] == ANSWER


async def test_it_streams_the_answer_as_server_sent_events(
    alice, alice_key, fake_endpoint, asgi_client
) -> None:
    await sync_to_async(fake_endpoint)([ANSWER])
    conversation = await _conversation(alice)

    async with asgi_client(**bearer(alice_key)) as client:
        response = await client.post(
            _url(conversation), json={"message": "Reset link?", "stream": True}
        )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names[0] == "start" and names[-1] == "done"
    assert set(names[1:-1]) == {"token"} and len(names) > 3
    turn_id = events[0][1]["turn_id"]
    assert "".join(data["text"] for name, data in events if name == "token") == ANSWER
    done = events[-1][1]
    assert done["turn_id"] == turn_id
    assert done["status"] == "done" and done["answer"] == ANSWER
    assert done["usage"]["output_tokens"] > 0
    turn = await Turn.objects.aget(pk=turn_id)
    assert turn.status == Turn.Status.DONE and turn.answer == ANSWER


async def test_it_reports_a_model_failure_as_502_and_keeps_the_turn(
    alice, alice_key, fake_endpoint, asgi_client
) -> None:
    await sync_to_async(fake_endpoint)(["abcdefgh"], error_on_chunk=3)
    conversation = await _conversation(alice)

    async with asgi_client(**bearer(alice_key)) as client:
        response = await client.post(_url(conversation), json={"message": "Anything?"})

    assert response.status_code == 502
    body = response.json()
    assert body["status"] == "failed"
    assert "failed to answer" in body["error"]
    assert "Traceback" not in body["error"] and "FakeListChatModelError" not in body["error"]
    turn = await Turn.objects.aget(pk=body["turn_id"])
    assert turn.status == Turn.Status.FAILED
    assert turn.error == body["error"]
    assert turn.user_text == "Anything?"


async def test_it_streams_an_error_event_when_the_model_fails(
    alice, alice_key, fake_endpoint, asgi_client
) -> None:
    await sync_to_async(fake_endpoint)(["abcdefgh"], error_on_chunk=3)
    conversation = await _conversation(alice)

    async with asgi_client(**bearer(alice_key)) as client:
        response = await client.post(_url(conversation), json={"message": "Hi", "stream": True})

    events = sse_events(response.text)
    assert [name for name, _ in events] == ["start", "token", "token", "token", "error"]
    failure = events[-1][1]
    assert failure["status"] == "failed" and failure["answer"] == "abc"
    assert "failed to answer" in failure["error"]
    turn = await Turn.objects.aget(pk=failure["turn_id"])
    assert turn.status == Turn.Status.FAILED and turn.answer == "abc"


async def test_it_uses_the_model_the_caller_names(
    alice, alice_key, fake_endpoint, asgi_client
) -> None:
    await sync_to_async(fake_endpoint)(["From the default."])
    other = await sync_to_async(fake_endpoint)(["From the other."], name="other", default=False)
    conversation = await _conversation(alice)

    async with asgi_client(**bearer(alice_key)) as client:
        response = await client.post(_url(conversation), json={"message": "Hi", "model": "other"})

    body = response.json()
    assert body["answer"] == "From the other." and body["model"] == "other"
    turn = await Turn.objects.aget(pk=body["turn_id"])
    assert turn.endpoint_id == other.pk
    assert turn.route_reason == "requested by the caller"


async def test_it_refuses_an_unknown_model_before_saving_anything(
    alice, alice_key, fake_endpoint, asgi_client
) -> None:
    await sync_to_async(fake_endpoint)()
    await sync_to_async(fake_endpoint)(name="switched-off", default=False, enabled=False)
    conversation = await _conversation(alice)

    async with asgi_client(**bearer(alice_key)) as client:
        unknown = await client.post(_url(conversation), json={"message": "Hi", "model": "nope"})
        disabled = await client.post(
            _url(conversation), json={"message": "Hi", "model": "switched-off"}
        )

    assert unknown.status_code == disabled.status_code == 404
    assert unknown.json() == {"detail": "The model 'nope' does not exist or is disabled."}
    assert not await Turn.objects.filter(conversation=conversation).aexists()


def _http_scope(path: str, body: bytes, key: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", f"Bearer {key}".encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


async def test_it_ends_the_turn_cancelled_when_the_client_disconnects(
    alice, alice_key, fake_endpoint
) -> None:
    from chatbot.asgi import application

    await sync_to_async(fake_endpoint)(["x" * 300], sleep=0.01)
    conversation = await _conversation(alice)
    body = json.dumps({"message": "A long story, please", "stream": True}).encode()
    gone = asyncio.Event()
    request_read = False
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal request_read
        if not request_read:
            request_read = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            chunks.append(message["body"])
            # Each piece reaches the client as it is made: hang up after a few of them.
            if sum(b"event: token" in c for c in chunks) >= 5:
                gone.set()

    await application(_http_scope(_url(conversation), body, alice_key), receive, send)

    received = "".join(
        data["text"] for name, data in sse_events(b"".join(chunks).decode()) if name == "token"
    )
    turn = await Turn.objects.aget(conversation=conversation)
    assert turn.status == Turn.Status.CANCELLED
    assert turn.answer.startswith(received) and len(received) >= 5
    assert len(turn.answer) < 300, "the model stopped when the client left"
    assert turn.finished_at is not None
