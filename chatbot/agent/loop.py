"""The agent's steps within a turn: choose, act, look at the result, until it answers.

A turn runs this loop when the person may use a tool beyond the knowledge-base search and the
routed model can choose tools (its catalogue entry's `tool_calling`). Otherwise the turn stays the
plain "search, then answer" pipeline, which is the loop's one-step case and costs no extra call.

Each step is a span: the choice (kind `agent`) and each tool call (kind `tool`, with its
arguments, a result summary, latency and any error). Every call is checked twice before it runs:
its arguments against the tool's schema, and the tool against what this person may use. A refused
or failed call is shown to the person in words and fed back to the model as a result, and the
turn goes on. Tool results and passages reach the model only as delimited data, so text inside
them cannot widen what the agent may do: that is decided here, from the person's roles.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.models import User

from chatbot.agent import fallback
from chatbot.agent.choose import ANSWER, ASK, HAND_OVER, Decision, Offered, choose_step
from chatbot.agent.grounding import (
    Grounding,
    assistant_settings,
    context_fit,
    numbered_source,
    source_block,
    sources_prompt,
)
from chatbot.agent.prepare import turn_asker
from chatbot.agent.routing import Routing, route_step, route_traced, routing_load, sent_texts
from chatbot.agent.tools import ToolContext, ToolFailed, ToolResult
from chatbot.agent.tools.access import (
    Allowed,
    tool_refusal,
    tools_allowed,
    tools_beyond_search,
)
from chatbot.agent.tools.base import compact_json
from chatbot.llm.pricing import usage_cost
from chatbot.llm.router import Route
from chatbot.llm.tools import Exchange, ToolCall
from chatbot.llm.types import EndpointConfig, ModelError, Prompt, Usage
from chatbot.models import AssistantSettings
from chatbot.retrieval.search import SearchHit
from chatbot.telemetry.tracing import SpanRecord, Tracer

logger = logging.getLogger(__name__)

MAX_STEPS_LIMIT = 8
SUMMARY_LIMIT = 200
SPAN_RESULT_LIMIT = 2000


@dataclass(frozen=True)
class StepEvent:
    """A tool call as the chat shows it while it happens."""

    id: str
    tool: str
    label: str
    arguments: dict[str, Any]
    status: str  # running, done, failed, refused
    summary: str = ""
    data: dict[str, Any] = field(default_factory=dict)


StepEmit = Callable[[StepEvent], Awaitable[None]]


@dataclass
class Plan:
    user: User
    allowed: dict[str, Allowed]
    route: Route
    max_steps: int
    config: AssistantSettings
    # What the model is offered, described now (a description may read the database).
    offered: list[Offered] = field(default_factory=list)
    # The routing rules, read once; each step is routed by them (`_step_route`).
    routing: Routing | None = None


def agent_plan(turn_id: int, requested_model: str | None) -> Plan | None:
    """The loop's setup for this turn, or None when the turn is the plain pipeline."""
    if not tools_beyond_search():
        return None  # one query, and the plain pipeline's time to first token is untouched
    user, _ = turn_asker(turn_id)
    allowed = tools_allowed(user)
    config = assistant_settings()
    if config.grounding == AssistantSettings.Grounding.OFF:
        allowed.pop("kb_search", None)
    if not set(allowed) - {"kb_search"}:
        return None
    routing = routing_load(user=user, requested=requested_model)
    route = routing.baseline()
    if route.endpoint.tool_calling == "none":
        return None
    steps = max(1, min(MAX_STEPS_LIMIT, config.max_steps))
    offered = [Offered(a.tool, a.tool.describe(a.options)) for a in allowed.values()]
    return Plan(
        user=user,
        allowed=allowed,
        route=route,
        max_steps=steps,
        config=config,
        offered=offered,
        routing=routing,
    )


@dataclass
class Called:
    """A tool call that returned a result the answer may cite."""

    span: SpanRecord
    tool: str
    arguments: dict[str, Any]
    result: ToolResult


@dataclass
class AgentEnd:
    """How the steps ended: `kind` is "answer" (stream an answer from what was gathered),
    "plain" (nothing gathered, or only results that found nothing: the plain pipeline answers,
    grounding the question itself), "ask" or "hand_over" (`text`)."""

    kind: str
    text: str = ""
    prompt: Prompt | None = None
    grounding: Grounding | None = None
    called: list[Called] = field(default_factory=list)
    # The route of the last step (the answer's own for "answer"); None before any step was routed.
    route: Route | None = None
    # What the step choices cost, each at its own model's prices.
    cost: Decimal = Decimal(0)


@dataclass
class _Steps:
    plan: Plan
    tracer: Tracer
    turn_id: int
    on_step: StepEmit | None
    kb_as_of: dict[int, int] | None = None
    config: AssistantSettings | None = None
    usage: Usage = field(default_factory=Usage)
    exchanges: list[Exchange] = field(default_factory=list)
    called: list[Called] = field(default_factory=list)
    searched: list[ToolResult] = field(default_factory=list)
    route: Route | None = None
    cost: Decimal = Decimal(0)

    async def emit(self, event: StepEvent) -> None:
        if self.on_step is not None:
            await self.on_step(event)


async def agent_steps(
    *,
    plan: Plan,
    prompt: Prompt,
    tracer: Tracer,
    turn_id: int,
    on_step: StepEmit | None,
    kb_as_of: dict[int, int] | None = None,
    config: AssistantSettings | None = None,
) -> tuple[AgentEnd, Usage]:
    """Run the steps; returns how they ended and what the choices cost. `kb_as_of`: the
    knowledge-base search tool reads the collections as of those versions; `config`: it searches
    with these retrieval settings (an A/B test variant's) instead of the saved ones."""
    steps = _Steps(
        plan=plan,
        tracer=tracer,
        turn_id=turn_id,
        on_step=on_step,
        kb_as_of=kb_as_of,
        config=config,
    )
    offered = plan.offered
    for number in range(1, plan.max_steps + 1):
        steps.route = _step_route(steps, prompt, "choose")
        endpoint = steps.route.endpoint
        if endpoint.tool_calling == "none":
            # The rules sent this step to a model that cannot choose tools: answer from what was
            # gathered (nothing yet: the plain pipeline answers).
            break
        decision = await _choose(steps, prompt, offered, number)
        if decision.action == ANSWER:
            break
        if decision.action == ASK:
            question = str(decision.arguments.get("question", ""))
            return _end(steps, "ask", text=question), steps.usage
        if decision.action == HAND_OVER:
            reason = str(decision.arguments.get("reason", ""))
            return _end(steps, "hand_over", text=reason), steps.usage
        await _call(steps, decision, number)
    return _gathered(steps, prompt), steps.usage


async def _choose(steps: _Steps, prompt: Prompt, offered: list[Offered], number: int) -> Decision:
    """Ask the step's model what to do next. A model error moves on to the route's next attempt
    (the availability rule's retries with backoff, then its fallbacks that can choose tools),
    each attempt its own span; the last attempt's error ends the turn."""
    route = steps.route
    assert route is not None
    planned = [a for a in fallback.attempts(route) if a.endpoint.tool_calling != "none"]
    for index, attempt in enumerate(planned):
        endpoint = attempt.endpoint
        if attempt.wait_s:
            await asyncio.sleep(attempt.wait_s)
        try:
            with steps.tracer.span(
                "agent",
                "choose",
                step=number,
                way=endpoint.tool_calling,
                endpoint=endpoint.name,
                **fallback.attempt_attributes(route, attempt),
            ) as span:
                before = Usage(steps.usage.input_tokens, steps.usage.output_tokens)
                try:
                    decision = await choose_step(
                        endpoint, prompt, offered, steps.exchanges, steps.usage
                    )
                finally:
                    _span_usage(span, endpoint, before, steps.usage)
                    steps.cost += span.cost
                span.attributes.update(
                    action=decision.action,
                    arguments=decision.arguments,
                    attempts=decision.attempts,
                    constrained=decision.constrained,
                )
                if decision.problem:
                    span.attributes["problem"] = decision.problem
                    span.attributes["raw"] = decision.raw[:SPAN_RESULT_LIMIT]
        except ModelError:
            if index == len(planned) - 1:
                raise
            continue
        steps.route = fallback.fallen_back(route, attempt)
        return decision
    raise AssertionError("the step's own model chooses tools, so one attempt is planned")


def _end(steps: _Steps, kind: str, **fields: Any) -> AgentEnd:
    fields.setdefault("route", steps.route)
    return AgentEnd(kind, cost=steps.cost, **fields)


def _step_route(
    steps: _Steps, prompt: Prompt, task: str, hits: list[SearchHit] | None = None
) -> Route:
    """This step's route by the rules, from what it would send: the conversation, every result
    so far (a tool's may hold personal data) and the passages found. A span when it changed."""
    routing = steps.plan.routing
    if routing is None:
        return steps.plan.route
    if hits is None:
        hits = [hit for result in steps.searched for hit in result.hits]
    texts = [*sent_texts(prompt), *(exchange.result for exchange in steps.exchanges)]
    top = max((h.similarity or 0.0 for h in hits), default=0.0) if steps.searched else None
    return route_traced(
        steps.tracer,
        task=task,
        decide=lambda: route_step(
            routing,
            task=task,
            question=prompt.question,
            texts=texts,
            hits=hits,
            top_similarity=top,
        ),
        previous=steps.route,
    )


def _span_usage(span: SpanRecord, endpoint: EndpointConfig, before: Usage, after: Usage) -> None:
    """The tokens and cost of this one choice, so the trace adds up to the turn."""
    spent = Usage(
        after.input_tokens - before.input_tokens,
        after.output_tokens - before.output_tokens,
        after.estimated,
    )
    span.tokens_in, span.tokens_out = spent.input_tokens, spent.output_tokens
    span.cost = usage_cost(endpoint, spent)
    span.attributes["tokens_estimated"] = spent.estimated


def _call_id(decision: Decision, number: int) -> str:
    return decision.call_id or f"step_{number}"


async def _call(steps: _Steps, decision: Decision, number: int) -> None:
    name, arguments = decision.action, decision.arguments
    allowed = steps.plan.allowed.get(name)
    label = allowed.tool.label if allowed else name[:60]
    with steps.tracer.span("tool", name[:60], arguments=arguments, step=number) as span:
        event = StepEvent(
            id=str(span.id), tool=name[:60], label=label, arguments=arguments, status=""
        )
        refusal = tool_refusal(name, steps.plan.allowed)
        if refusal or allowed is None:
            await _failed(steps, span, event, decision, number, "refused", refusal)
            return
        if decision.problem:
            problem = (
                f"The arguments for '{name}' were not valid ({decision.problem}), "
                "so it was not called."
            )
            await _failed(steps, span, event, decision, number, "failed", problem)
            return
        await steps.emit(_with(event, status="running"))
        result, problem = await _run(steps, allowed, arguments, span)
        if result is None:
            await _failed(steps, span, event, decision, number, "failed", problem)
            return
        span.attributes.update(
            status="done",
            summary=result.summary[:SUMMARY_LIMIT],
            result=result.model_text()[:SPAN_RESULT_LIMIT],
            data=result.data,
        )
        await steps.emit(_with(event, status="done", summary=result.summary, data=result.data))
        steps.exchanges.append(Exchange(_tool_call(decision, number), result.model_text()))
        if name == "kb_search":
            steps.searched.append(result)
        else:
            steps.called.append(Called(span, name, arguments, result))


async def _failed(
    steps: _Steps,
    span: SpanRecord,
    event: StepEvent,
    decision: Decision,
    number: int,
    status: str,
    problem: str,
) -> None:
    """A call refused or failed: in the trace, shown in words, and told to the model as the
    step's result, so the turn goes on."""
    span.attributes.update(status=status, summary=problem[:SUMMARY_LIMIT])
    span.error = problem
    await steps.emit(_with(event, status=status, summary=problem))
    steps.exchanges.append(Exchange(_tool_call(decision, number), f"Error: {problem}"))


def _tool_call(decision: Decision, number: int) -> ToolCall:
    return ToolCall(_call_id(decision, number), decision.action[:60], decision.arguments)


def _with(event: StepEvent, **changes: Any) -> StepEvent:
    return StepEvent(**{**event.__dict__, **changes})


async def _run(
    steps: _Steps, allowed: Allowed, arguments: dict[str, Any], span: SpanRecord
) -> tuple[ToolResult | None, str]:
    context = ToolContext(
        user=steps.plan.user,
        options=allowed.options,
        timeout_s=allowed.timeout_s,
        turn_id=steps.turn_id,
        tracer=steps.tracer,
        kb_as_of=steps.kb_as_of,
        config=steps.config,
    )
    try:
        result = await asyncio.wait_for(
            sync_to_async(allowed.tool.run)(arguments, context), timeout=allowed.timeout_s
        )
    except TimeoutError:
        return (
            None,
            f"'{allowed.tool.label}' took longer than {allowed.timeout_s:g} s, so it was stopped.",
        )
    except ToolFailed as exc:
        span.attributes["error_detail"] = exc.detail
        return None, exc.user_message
    except Exception as exc:  # a tool's bug must not end the turn: the model hears it failed
        logger.exception("tool %s crashed", allowed.tool.name)
        span.attributes["error_detail"] = f"{type(exc).__name__}: {exc}"
        return None, f"'{allowed.tool.label}' failed unexpectedly."
    return result, ""


def _gathered(steps: _Steps, prompt: Prompt) -> AgentEnd:
    """Passages first, numbered [1]...; then each tool result under the next number.

    Results that found nothing (a query without rows) are no evidence: when they are all there
    is, the plain pipeline answers instead, so its search and no-answer check decide: a question
    nothing supports gets "I couldn't find this", not an answer made up beside an empty table.
    Beside a passage or another result they are still given to the model, as what was checked."""
    hits: list[SearchHit] = []
    seen: set[int] = set()
    versions: dict[str, int] = {}
    for result in steps.searched:
        versions.update(result.data.get("kb_versions") or {})
        for hit in result.hits:
            if hit.chunk_id not in seen:
                seen.add(hit.chunk_id)
                hits.append(hit)
    if not hits and all(called.result.empty for called in steps.called):
        return _end(steps, "plain")
    route = _step_route(steps, prompt, "answer", hits)
    endpoint = route.endpoint
    budget = endpoint.context_window - endpoint.max_output_tokens
    hits = context_fit(hits, prompt=prompt, budget_tokens=budget)
    blocks = [source_block(n, hit) for n, hit in enumerate(hits, start=1)]
    for number, called in enumerate(steps.called, start=len(hits) + 1):
        called.span.attributes["number"] = number
        label = f"Result of {called.tool} {compact_json(called.arguments)}"
        blocks.append(numbered_source(number, label, called.result.model_text()))
    grounding = Grounding(
        mode=steps.plan.config.grounding,
        hits=hits,
        kb_versions=versions,
        reason=f"agent: {len(hits)} passages, {len(steps.called)} tool results",
    )
    return _end(
        steps,
        "answer",
        prompt=sources_prompt(prompt, blocks),
        grounding=grounding,
        called=steps.called,
        route=route,
    )
