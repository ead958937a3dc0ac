"""Many answers at once: through the real ASGI app from a steady fake model peer, every token
arrives in order and every turn is saved; the database and Redis connections they use stay
bounded. (How fast is tests/benchmarks/bench_streams.py's business: nothing here is timed.)"""

from __future__ import annotations

import asyncio
import html
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from channels_redis.core import RedisChannelLayer as PlainRedisChannelLayer
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from redis.exceptions import MaxConnectionsError

from chatbot.accounts.roles import AGENT
from chatbot.accounts.services import roles_ensure, user_create
from chatbot.asgi import application
from chatbot.chat import services
from chatbot.models import ModelEndpoint, Turn
from chatbot.runtime.channel_layer import RedisChannelLayer
from chatbot.runtime.db import db_sync_to_async
from tests.fake_peers import fake_peer

pytestmark = pytest.mark.django_db(transaction=True)

STREAMS = 20
TOKENS = 15
TIMEOUT = 30
TOKEN = re.compile(r'data-frame="token">(.*?)</span>', re.DOTALL)


def _steady_chunks(tokens: int) -> Iterator[bytes]:
    """An OpenAI chat stream of "0 ", "1 ", ... with a pause before each token, as a model
    writes: the streams overlap instead of each arriving whole."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        body = {
            "id": "s",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "steady",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(body)}\n\n".encode()

    yield chunk({"role": "assistant", "content": ""})
    for i in range(tokens):
        time.sleep(0.01)
        yield chunk({"content": f"{i} "})
    yield chunk({}, "stop")
    yield b"data: [DONE]\n\n"


def _steady(path: str, body: dict[str, Any]) -> tuple[int, Iterator[bytes], str]:
    return 200, _steady_chunks(TOKENS), "text/event-stream"


def _agents(count: int) -> list[User]:
    roles_ensure()
    return [
        user_create(username=f"streamer-{i:02d}", password="streamer-password-1", role=AGENT)
        for i in range(count)
    ]


def _cookie(user: User) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def _peer_endpoint(url: str) -> None:
    ModelEndpoint.objects.filter(is_default=True).update(is_default=False)
    ModelEndpoint.objects.create(
        name="steady-peer",
        provider=ModelEndpoint.Provider.OPENAI,
        base_url=f"{url}/v1",
        model_id="steady",
        style=ModelEndpoint.Style.CHAT,
        tool_calling=ModelEndpoint.ToolCalling.NONE,
        is_default=True,
    )


def _plain(frame: str) -> str:
    """A frame's words without its markup, so a failure says what the page said."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", frame)).split())


async def _ask_and_read(user: User, number: int) -> list[int]:
    conversation = await sync_to_async(services.conversation_create)(owner=user)
    cookie = await sync_to_async(_cookie)(user)
    headers = [(b"origin", b"http://testserver"), (b"cookie", f"sessionid={cookie}".encode())]
    socket = WebsocketCommunicator(application, f"/ws/chat/{conversation.pk}/", headers=headers)
    connected, _ = await socket.connect(timeout=TIMEOUT)
    assert connected
    try:
        await socket.send_to(text_data=json.dumps({"message": f"Count for me, #{number}."}))
        numbers: list[int] = []
        while True:
            frame = await socket.receive_from(timeout=TIMEOUT)
            if 'data-frame="token"' in frame:
                for text in TOKEN.findall(frame):
                    numbers += [int(n) for n in html.unescape(text).split()]
            elif 'data-frame="end"' in frame:
                return numbers
            else:
                assert 'data-frame="start"' in frame, f"unexpected frame: {_plain(frame)}"
    finally:
        await socket.disconnect(timeout=TIMEOUT)


async def test_it_streams_twenty_answers_at_once_in_order_and_saves_every_turn() -> None:
    users = await sync_to_async(_agents)(STREAMS)
    with fake_peer(_steady) as (url, seen):
        await sync_to_async(_peer_endpoint)(url)
        received = await asyncio.gather(*(_ask_and_read(u, n) for n, u in enumerate(users)))

    assert len(seen) == STREAMS, "each answer asked the model once"
    for numbers in received:
        assert numbers == list(range(TOKENS)), "every token, once, in order"
    expected = "".join(f"{i} " for i in range(TOKENS))
    turns = [t async for t in Turn.objects.filter(conversation__owner__in=users)]
    assert len(turns) == STREAMS
    assert {t.status for t in turns} == {Turn.Status.DONE}
    assert {t.answer for t in turns} == {expected}
    assert len({t.conversation_id for t in turns}) == STREAMS


def _backend_pid() -> tuple[int, str]:
    with connection.cursor() as cursor:
        # Long enough that the calls overlap: otherwise one thread could serve them all.
        cursor.execute("SELECT pg_backend_pid(), pg_sleep(0.02)")
        pid = cursor.fetchone()[0]
    return pid, threading.current_thread().name


async def test_it_keeps_database_connections_to_its_threads_however_many_calls_wait() -> None:
    calls = settings.DB_THREADS * 5
    results = await asyncio.gather(*(db_sync_to_async(_backend_pid)() for _ in range(calls)))

    pids = {pid for pid, _ in results}
    threads = {name for _, name in results}
    assert len(results) == calls
    assert 1 < len(pids) <= settings.DB_THREADS, "some ran side by side, never on more connections"
    assert all(name.startswith("db") for name in threads)


def _test_redis_url() -> str:
    return str(settings.CACHES["default"]["LOCATION"])


async def test_it_lets_group_calls_wait_for_a_free_redis_connection() -> None:
    host = {"address": _test_redis_url(), "max_connections": 2, "timeout": TIMEOUT}
    layer = RedisChannelLayer(hosts=[host], prefix="test-bounded")
    channels = [f"test-bounded.{i}" for i in range(50)]
    try:
        await asyncio.gather(*(layer.group_add("crowd", c) for c in channels))
        await asyncio.gather(*(layer.group_discard("crowd", c) for c in channels))
    finally:
        await layer.flush()


async def test_it_shows_why_the_plain_layer_was_replaced() -> None:
    """The same burst on channels_redis's own pool fails instead of waiting."""
    host = {"address": _test_redis_url(), "max_connections": 2}
    layer = PlainRedisChannelLayer(hosts=[host], prefix="test-plain")
    outcomes = await asyncio.gather(
        *(layer.group_add("crowd", f"test-plain.{i}") for i in range(50)), return_exceptions=True
    )
    await RedisChannelLayer(hosts=[{"address": _test_redis_url()}], prefix="test-plain").flush()

    assert any(isinstance(outcome, MaxConnectionsError) for outcome in outcomes)


async def _get(path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    """One GET through the ASGI app (channels' HttpCommunicator trips on a body-less message)."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"testserver")], "server": ("testserver", 80),
        "client": ("127.0.0.1", 1234),
    }  # fmt: skip
    sent: list[dict[str, Any]] = []
    done = asyncio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    await asyncio.wait_for(application(scope, receive, send), TIMEOUT)
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], {k.lower(): v for k, v in start["headers"]}, body


async def test_it_serves_static_files_on_the_async_path() -> None:
    """Static files come from the async-capable WhiteNoise middleware (chatbot.runtime.static);
    anything else reaches the next handler."""
    status, headers, body = await _get("/static/css/app.css")
    missing, _, _ = await _get("/static/css/nothing.css")

    assert status == 200
    assert headers[b"content-type"].startswith(b"text/css")
    assert body
    assert missing == 404
