"""The structured step choice against a fake llama.cpp completion server (the network edge):
a free first attempt, the grammar only when that output does not fit, and later steps that
repeat the first step's prompt so the server can reuse its evaluation."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from chatbot.agent.choose import ANSWER, Offered, choose_structured, structured_text
from chatbot.agent.tools import TOOLS
from chatbot.llm.tools import Exchange, ToolCall
from chatbot.llm.types import EndpointConfig, Message, Prompt, Usage
from tests.fake_peers import fake_peer, sse

QUESTION = "How many open tickets are there for billing?"
PROMPT = Prompt((Message("system", "Be brief."), Message("user", QUESTION)))
SQL_ARGUMENTS: dict[str, Any] = {"query": "SELECT count(*) FROM tickets"}
SQL_STEP = {"step": "sql", "arguments": SQL_ARGUMENTS}


def _offered() -> list[Offered]:
    return [Offered(TOOLS[name], TOOLS[name].description) for name in ("kb_search", "sql")]


def _endpoint(url: str) -> EndpointConfig:
    return EndpointConfig(
        id=1,
        name="local",
        provider="openai",
        base_url=f"{url}/v1",
        model_id="gemma",
        api_key_name="",
        style="completion",
        prompt_template="",
        price_input_per_mtok=Decimal(0),
        price_output_per_mtok=Decimal(0),
        context_window=4096,
        max_output_tokens=100,
        temperature=0.0,
        region="test",
    )


def _server(outputs: list[str]):
    """Answers /v1/completions with `outputs` in turn, as llama-cpp-python's server does."""

    def handler(path: str, body: dict[str, Any]) -> tuple[int, list[bytes], str]:
        chunk = {
            "id": "c",
            "object": "text_completion",
            "created": 1,
            "model": "gemma",
            "choices": [
                {"index": 0, "text": outputs.pop(0), "finish_reason": "stop", "logprobs": None}
            ],
        }
        return 200, sse([(None, chunk), (None, "[DONE]")]), "text/event-stream"

    return fake_peer(handler)


async def test_it_takes_a_step_written_without_the_grammar_when_it_fits() -> None:
    with _server([" " + json.dumps(SQL_STEP)]) as (url, seen):
        decision = await choose_structured(_endpoint(url), PROMPT, _offered(), [], Usage())

    assert (decision.action, decision.arguments) == ("sql", SQL_ARGUMENTS)
    assert (decision.attempts, decision.constrained, decision.problem) == (1, False, "")
    assert len(seen) == 1
    body = seen[0]["body"]
    assert "grammar" not in body and body["stop"] == ["\n"] and body["temperature"] == 0.0
    assert body["prompt"] == structured_text(PROMPT, _offered(), [])


@pytest.mark.parametrize(
    "free",
    [
        "I would look in the tickets table.",  # not JSON
        json.dumps({"step": ANSWER}),  # answering before any step had a result
        json.dumps({"step": "web_search", "arguments": {"query": "billing"}}),  # not offered
        json.dumps({"step": "sql", "arguments": {}}),  # its arguments do not fit the schema
    ],
)
async def test_it_asks_again_under_the_grammar_when_the_free_step_does_not_fit(free: str) -> None:
    with _server([free, json.dumps(SQL_STEP)]) as (url, seen):
        decision = await choose_structured(_endpoint(url), PROMPT, _offered(), [], Usage())

    assert decision.action == "sql" and not decision.problem
    assert (decision.attempts, decision.constrained) == (2, True)
    assert [("grammar" in s["body"]) for s in seen] == [False, True]
    grammar = seen[1]["body"]["grammar"]
    assert '\\"sql\\"' in grammar and '\\"answer\\"' not in grammar  # no answer before a result
    assert not seen[1]["body"].get("stop")


async def test_it_answers_once_a_step_has_a_result() -> None:
    exchange = Exchange(ToolCall("step_1", "sql", SQL_ARGUMENTS), "count = 25")
    with _server([json.dumps({"step": ANSWER})]) as (url, seen):
        decision = await choose_structured(_endpoint(url), PROMPT, _offered(), [exchange], Usage())

    assert (decision.action, decision.attempts, decision.constrained) == (ANSWER, 1, False)
    assert len(seen) == 1


def test_a_later_step_repeats_the_first_steps_prompt_up_to_its_question() -> None:
    """llama.cpp reuses the evaluation of the longest prefix it has just seen: the second step
    starts with everything the first sent before its question."""
    first = structured_text(PROMPT, _offered(), [])
    exchange = Exchange(ToolCall("step_1", "sql", SQL_ARGUMENTS), "count = 25")
    second = structured_text(PROMPT, _offered(), [exchange])

    shared = first[: first.rindex(f"Question: {QUESTION}\nStep:")]
    assert second.startswith(shared)
    assert len(shared) > 0.9 * len(first)
    assert "- answer:" not in first and "- answer:" in second[len(shared) :]
    assert second.endswith("count = 25\n</result>\nStep:")
