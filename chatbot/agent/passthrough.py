"""A caller's own tools, passed through (the OpenAI-compatible API with `tools`): the caller runs
its own agent and we relay one model call to a natively tool-calling endpoint, traced and recorded
as a turn like any other (its tool calls are on the `llm` span and in the turn's answer text).

Our knowledge base and our own tools are not used on this path: the caller asked for its tools.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async

from chatbot.agent import records
from chatbot.llm.pricing import estimate_tokens, usage_cost
from chatbot.llm.router import Route
from chatbot.llm.tools import ToolCall, WireMessage, call_with_tools
from chatbot.llm.types import ModelError, Overrides, Usage
from chatbot.models import Turn
from chatbot.telemetry.tracing import Tracer

logger = logging.getLogger(__name__)


@dataclass
class PassOutcome:
    turn_id: int
    status: str
    text: str
    calls: list[ToolCall] = field(default_factory=list)
    error: str = ""
    usage: Usage = field(default_factory=Usage)
    endpoint_name: str = ""


def calls_text(calls: list[ToolCall]) -> str:
    """The tool calls as the turn's answer text, for review and the trace."""
    return "\n".join(f"[tool call] {c.name}({json.dumps(c.arguments)})" for c in calls)


async def turn_passthrough(
    *,
    turn_id: int,
    route: Route,
    messages: list[WireMessage],
    tools: list[dict[str, Any]],
    tool_choice: str | dict[str, Any] | None,
    overrides: Overrides,
) -> PassOutcome:
    endpoint = route.endpoint
    tracer, usage, started = Tracer(), Usage(), time.perf_counter()
    outcome = PassOutcome(turn_id=turn_id, status=Turn.Status.DONE, text="", usage=usage)
    outcome.endpoint_name = endpoint.name
    with tracer.span("agent", "turn", mode="tools passed through", tools=len(tools)) as root:
        root.attributes.update(route=route.reason, endpoint=endpoint.name)
        with tracer.span(
            "llm",
            endpoint.name,
            **endpoint.span_attributes(),
            tool_names=[t.get("function", {}).get("name", "") for t in tools],
            tool_choice=tool_choice,
        ) as span:
            try:
                choice = await call_with_tools(
                    endpoint,
                    messages,
                    tools,
                    tool_choice=tool_choice,
                    usage=usage,
                    max_tokens=overrides.max_tokens,
                    temperature=overrides.temperature,
                )
                outcome.text, outcome.calls = choice.text, choice.calls
                span.attributes["tool_calls"] = [
                    {"id": c.id, "name": c.name, "arguments": c.arguments} for c in choice.calls
                ]
            except ModelError as exc:
                outcome.status, outcome.error = Turn.Status.FAILED, exc.user_message
                span.error = exc.detail
                logger.warning("turn %s failed: %s", turn_id, exc.detail)
            if not (usage.input_tokens or usage.output_tokens):
                usage.input_tokens = estimate_tokens("".join(m.content for m in messages))
                usage.output_tokens = estimate_tokens(outcome.text + calls_text(outcome.calls))
                usage.estimated = True
            span.tokens_in, span.tokens_out = usage.input_tokens, usage.output_tokens
            span.cost = usage_cost(endpoint, usage)
    answer = outcome.text or calls_text(outcome.calls)
    elapsed = (time.perf_counter() - started) * 1000
    result = records.TurnResult(
        status=outcome.status,
        answer=answer,
        usage=usage,
        cost=usage_cost(endpoint, usage),
        ttft_ms=elapsed,
        total_ms=elapsed,
        error=outcome.error,
        endpoint_id=endpoint.id,
        route_reason=route.reason,
    )
    await sync_to_async(records.turn_finish)(turn_id=turn_id, result=result, tracer=tracer)
    return outcome
