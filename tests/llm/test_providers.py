"""Each provider against a fake HTTP peer speaking its wire format (the network edge)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import override_settings

from chatbot.llm.pricing import usage_cost
from chatbot.llm.prompts import DEFAULT_COMPLETION_TEMPLATE, render_completion
from chatbot.llm.stream import astream_text
from chatbot.llm.types import EndpointConfig, Message, ModelError, Overrides, Prompt, Usage
from tests.fake_peers import fake_peer, sse

PROMPT = Prompt(
    (
        Message("system", "Be brief."),
        Message("user", "Hi"),
        Message("assistant", "Hello."),
        Message("user", "How long is the reset link valid?"),
    )
)


def _endpoint(**overrides: Any) -> EndpointConfig:
    fields: dict[str, Any] = {
        "id": 1,
        "name": "peer",
        "provider": "openai",
        "base_url": "",
        "model_id": "peer-model",
        "api_key_name": "",
        "style": "chat",
        "prompt_template": "",
        "price_input_per_mtok": Decimal("3"),
        "price_output_per_mtok": Decimal("15"),
        "context_window": 8192,
        "max_output_tokens": 100,
        "temperature": 0.0,
        "region": "test",
        "options": {},
        "version": "v1",
    }
    fields.update(overrides)
    return EndpointConfig(**fields)


async def _collect(endpoint: EndpointConfig, usage: Usage) -> str:
    return "".join([piece async for piece in astream_text(endpoint, PROMPT, usage)])


def _openai_chat_stream(path: str, body: dict[str, Any]) -> tuple[int, list[bytes], str]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "peer-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    usage = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "peer-model",
        "choices": [],
        "usage": {"prompt_tokens": 42, "completion_tokens": 3, "total_tokens": 45},
    }
    events: list[tuple[str | None, dict[str, Any] | str]] = [
        (None, chunk({"role": "assistant", "content": ""})),
        (None, chunk({"content": "Thirty"})),
        (None, chunk({"content": " minutes"})),
        (None, chunk({"content": "."}, "stop")),
        (None, usage),
        (None, "[DONE]"),
    ]
    return 200, sse(events), "text/event-stream"


async def test_it_uses_the_token_counts_an_openai_compatible_server_reports() -> None:
    with fake_peer(_openai_chat_stream) as (url, seen):
        usage = Usage()
        text = await _collect(_endpoint(base_url=f"{url}/v1"), usage)
    assert text == "Thirty minutes."
    assert (usage.input_tokens, usage.output_tokens, usage.estimated) == (42, 3, False)
    request = seen[0]
    assert request["path"] == "/v1/chat/completions"
    assert [m["role"] for m in request["body"]["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
    ]
    assert request["body"]["stream"] is True
    assert usage_cost(_endpoint(), usage) == (Decimal(42) * 3 + Decimal(3) * 15) / Decimal(10**6)


def _openai_completion_stream(path: str, body: dict[str, Any]) -> tuple[int, list[bytes], str]:
    def chunk(text: str) -> dict[str, Any]:
        return {
            "id": "x",
            "object": "text_completion",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "text": text, "finish_reason": None, "logprobs": None}],
        }

    return (
        200,
        sse([(None, chunk(" 30")), (None, chunk(" minutes")), (None, "[DONE]")]),
        "text/event-stream",
    )


async def test_it_sends_a_rendered_template_to_completion_style_models() -> None:
    endpoint = _endpoint(style="completion", prompt_template=DEFAULT_COMPLETION_TEMPLATE)
    with fake_peer(_openai_completion_stream) as (url, seen):
        usage = Usage()
        text = await _collect(_endpoint(**{**endpoint.__dict__, "base_url": f"{url}/v1"}), usage)
    assert text == " 30 minutes"
    body = seen[0]["body"]
    assert seen[0]["path"] == "/v1/completions"
    assert body["prompt"] == render_completion(DEFAULT_COMPLETION_TEMPLATE, PROMPT)
    assert body["prompt"].endswith("Question: How long is the reset link valid?\nAnswer:")
    assert "Question: Hi\nAnswer: Hello.\n" in body["prompt"]
    assert body["stop"] == ["\nQuestion:", "\n\n\n"]
    # No counts from this server: estimated, and marked so.
    assert usage.estimated and usage.output_tokens == 2 and usage.input_tokens > 0


def _anthropic_stream(path: str, body: dict[str, Any]) -> tuple[int, list[bytes], str]:
    events: list[tuple[str | None, dict[str, Any] | str]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-test",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 25, "output_tokens": 1},
                },
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Half"},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": " an hour."},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                # The API reports the complete counts (input included) on message_delta.
                "usage": {"input_tokens": 25, "output_tokens": 4},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return 200, sse(events), "text/event-stream"


@override_settings(MODEL_API_KEYS={"ANTHROPIC_API_KEY": "test-key"})
async def test_it_streams_from_anthropic_with_its_token_counts() -> None:
    with fake_peer(_anthropic_stream) as (url, seen):
        endpoint = _endpoint(provider="anthropic", base_url=url, api_key_name="ANTHROPIC_API_KEY")
        usage = Usage()
        text = await _collect(endpoint, usage)
    assert text == "Half an hour."
    assert (usage.input_tokens, usage.output_tokens, usage.estimated) == (25, 4, False)
    assert seen[0]["path"] == "/v1/messages"
    headers = seen[0]["headers"]
    assert "test-key" in (headers.get("x-api-key", "") + headers.get("authorization", ""))
    assert seen[0]["body"]["system"] == "Be brief."


async def test_it_refuses_a_hosted_model_whose_key_is_missing() -> None:
    endpoint = _endpoint(provider="anthropic", api_key_name="ANTHROPIC_API_KEY_UNSET")
    with pytest.raises(ModelError) as caught:
        await _collect(endpoint, Usage())
    assert "API key is missing" in caught.value.user_message


def _server_error(path: str, body: dict[str, Any]) -> tuple[int, list[bytes], str]:
    return (
        401,
        [b'{"error": {"message": "bad key", "type": "invalid_request_error"}}'],
        "application/json",
    )


async def test_it_explains_a_refused_credential_in_plain_words() -> None:
    with fake_peer(_server_error) as (url, _), pytest.raises(ModelError) as caught:
        await _collect(_endpoint(base_url=f"{url}/v1"), Usage())
    assert "refused our credentials" in caught.value.user_message
    assert "401" in caught.value.detail or "Authentication" in caught.value.detail


async def test_it_refuses_an_unknown_provider() -> None:
    with pytest.raises(ModelError) as caught:
        await _collect(_endpoint(provider="nope"), Usage())
    assert "unknown provider" in caught.value.user_message


async def test_it_lets_a_caller_lower_but_not_raise_the_output_limit() -> None:
    endpoint = _endpoint(max_output_tokens=100)
    with fake_peer(_openai_chat_stream) as (url, seen):
        config = _endpoint(**{**endpoint.__dict__, "base_url": f"{url}/v1"})
        for asked in (20, 5000):
            overrides = Overrides(max_tokens=asked, temperature=0.7)
            _ = [p async for p in astream_text(config, PROMPT, Usage(), overrides=overrides)]
    sent = [(r["body"].get("max_tokens") or r["body"].get("max_completion_tokens")) for r in seen]
    assert sent == [20, 100]
    assert all(r["body"]["temperature"] == 0.7 for r in seen)
