"""The model registry reuses a client within an event loop and never across loops: a client's
connection pool belongs to the loop it ran on (Celery tasks run each model call on a new loop)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

from chatbot.llm.registry import model_for
from chatbot.llm.types import EndpointConfig
from tests.fake_peers import fake_peer

ENDPOINT = EndpointConfig(
    id=1, name="vllm", provider="openai", base_url="http://127.0.0.1:9/v1", model_id="m",
    api_key_name="", style="chat", prompt_template="", price_input_per_mtok=Decimal(0),
    price_output_per_mtok=Decimal(0), context_window=4096, max_output_tokens=64,
    temperature=0.0, region="local",
)  # fmt: skip


def test_it_reuses_a_client_within_a_loop_and_not_across_loops() -> None:
    async def twice() -> tuple[object, object]:
        return model_for(ENDPOINT), model_for(ENDPOINT)

    first_a, first_b = asyncio.run(twice())
    second_a, _ = asyncio.run(twice())

    assert first_a is first_b
    assert second_a is not first_a


def _one_token(path: str, body: dict[str, Any]) -> tuple[int, list[bytes], str]:
    chunk = {
        "id": "k",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}],
    }
    return (
        200,
        [f"data: {json.dumps(chunk)}\n\n".encode(), b"data: [DONE]\n\n"],
        "text/event-stream",
    )


def _text(chunk: object) -> str:
    return chunk if isinstance(chunk, str) else str(getattr(chunk, "content", ""))


def test_a_keep_alive_server_answers_calls_from_one_loop_after_another() -> None:
    """Each loop's model has its own connection pool: a pooled keep-alive connection opened on a
    loop that has since closed is never reused ("Event loop is closed" on every second call)."""
    with fake_peer(_one_token, keep_alive=True) as (url, seen):
        endpoint = replace(ENDPOINT, base_url=f"{url}/v1")

        async def ask() -> str:
            model = model_for(endpoint)
            return "".join([_text(chunk) async for chunk in model.astream("hello")])

        answers = [asyncio.run(ask()) for _ in range(3)]

    assert answers == ["hi"] * 3
    assert len(seen) == 3
