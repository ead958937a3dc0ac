"""A fake OpenAI-compatible model server that streams numbered tokens at a steady rate.

    .venv/bin/python -m uvicorn tests.benchmarks.steady_peer:app --port 8123 --log-level warning

A bare ASGI app (no framework, no Django), for bench_streams.py, which starts it in a process of its
own so its timers do not share a CPU-bound event loop with the client. `POST /v1/chat/completions`
with `stream: true` answers with `max_completion_tokens` (or `max_tokens`) chunks, the i-th carrying the text "<i> " (0-based),
sent on a fixed schedule: chunk i is due `i * STEADY_PEER_INTERVAL_MS` after the first, so a late
chunk does not push the later ones back. Then a usage chunk and `[DONE]`. `GET /stats` returns how
late the chunks left against their schedule (p50, p99, max, in ms) since the last `GET /stats`, so
the benchmark can tell the peer's own jitter from the server's. `GET /v1/models` lists one model.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

INTERVAL_S = float(os.environ.get("STEADY_PEER_INTERVAL_MS", "20")) / 1000
FIRST_TOKEN_S = float(os.environ.get("STEADY_PEER_FIRST_TOKEN_MS", "20")) / 1000
MODEL = "steady"

_lateness_ms: list[float] = []
_streams = {"started": 0, "finished": 0}


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "steady",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n".encode()


async def _json(send: Send, status: int, body: Any) -> None:
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _stream(send: Send, tokens: int) -> None:
    _streams["started"] += 1
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": _chunk({"role": "assistant", "content": ""}), "more_body": True})  # fmt: skip
    loop = asyncio.get_running_loop()
    first = loop.time() + FIRST_TOKEN_S
    for i in range(tokens):
        due = first + i * INTERVAL_S
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        _lateness_ms.append(max(0.0, loop.time() - due) * 1000)
        await send({"type": "http.response.body", "body": _chunk({"content": f"{i} "}), "more_body": True})  # fmt: skip
    usage = {
        "id": "steady",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [],
        "usage": {"prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": 10 + tokens},
    }
    tail = _chunk({}, "stop") + f"data: {json.dumps(usage)}\n\n".encode() + b"data: [DONE]\n\n"
    await send({"type": "http.response.body", "body": tail})
    _streams["finished"] += 1


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path, method = scope["path"], scope["method"]
    if method == "GET" and path == "/stats":
        stats = {
            "chunks": len(_lateness_ms),
            "late_p50_ms": _percentile(_lateness_ms, 0.5),
            "late_p99_ms": _percentile(_lateness_ms, 0.99),
            "late_max_ms": max(_lateness_ms, default=0.0),
            **_streams,
        }
        _lateness_ms.clear()
        await _json(send, 200, stats)
        return
    if method == "GET" and path == "/v1/models":
        await _json(send, 200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        return
    if method != "POST" or path != "/v1/chat/completions":
        await _json(send, 404, {"error": {"message": f"no route {method} {path}"}})
        return
    request = json.loads(await _read_body(receive) or b"{}")
    if not request.get("stream"):
        await _json(send, 400, {"error": {"message": "this peer only streams"}})
        return
    # langchain-openai sends the limit as max_completion_tokens; other clients as max_tokens.
    limit = request.get("max_completion_tokens") or request.get("max_tokens") or 50
    await _stream(send, int(limit))
