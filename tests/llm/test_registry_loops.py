"""The model registry reuses a client within an event loop and never across loops: a client's
connection pool belongs to the loop it ran on (Celery tasks run each model call on a new loop)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from chatbot.llm.registry import model_for
from chatbot.llm.types import EndpointConfig

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
