"""The turn loop: prepare, call the model, stream the answer, then record everything about the turn.

Callers (the websocket consumer, the API's SSE and JSON routes, the OpenAI-compatible route,
replays) create the turn first and pass an `emit` callback that sends each piece of text wherever
it goes. The database is touched once before the model call and once after the stream, never per
token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from decimal import Decimal

from chatbot.agent import abtest, fallback, records
from chatbot.agent.cache import CacheLookup, answer_cache_lookup
from chatbot.agent.grounding import Grounding, cited_numbers
from chatbot.agent.loop import Called, Plan, StepEmit, agent_plan, agent_steps
from chatbot.agent.prepare import Prepared, prompt_for_turn, turn_asker, turn_prepare
from chatbot.compliance.redact import Placeholders
from chatbot.llm.pricing import estimate_tokens, usage_cost
from chatbot.llm.router import Route
from chatbot.llm.stream import astream_text
from chatbot.llm.types import ModelError, Overrides, Prompt, Usage
from chatbot.llm.veil import veiled
from chatbot.models import Turn
from chatbot.runtime.db import db_sync_to_async
from chatbot.telemetry.logs import turn_logging
from chatbot.telemetry.metrics import turn_observe
from chatbot.telemetry.tracing import SpanRecord, Tracer

logger = logging.getLogger(__name__)

Emit = Callable[[str], Awaitable[None]]
CRASH_MESSAGE = "Something went wrong on our side. Please try again."
HAND_OVER_MESSAGE = (
    "I've handed this to a colleague ({reason}). Their reply will appear here when they answer."
)


@dataclass(frozen=True)
class TurnOutcome:
    turn_id: int
    status: str
    answer: str
    error: str
    endpoint_name: str
    usage: Usage


@dataclass
class _Run:
    """What one run of the loop gathers as it goes, turned into a `TurnResult` at the end."""

    turn_id: int
    tracer: Tracer = field(default_factory=Tracer)
    usage: Usage = field(default_factory=Usage)
    pieces: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    ttft_ms: float | None = None
    route: Route | None = None
    grounding: Grounding | None = None
    status: str = Turn.Status.DONE
    error: str = ""
    cancelled: bool = False
    marking: asyncio.Future[None] | None = None
    # What the agent's step choices cost (kept apart: the answer's span counts only its stream).
    choice_usage: Usage = field(default_factory=Usage)
    # ...and their cost, each choice at its own model's prices (the rules may route steps apart).
    choice_cost: Decimal = Decimal(0)
    # The model that chose the steps, recorded as the turn's when no model wrote the answer (the
    # steps found nothing and the knowledge base had no answer): its tokens are the turn's.
    choice_endpoint_id: int | None = None
    called: list[Called] = field(default_factory=list)
    hand_over: str = ""
    cache: records.CacheMark | None = None
    prompt_version_id: int | None = None  # the published system prompt the answer was built with
    instructions_version_id: int | None = None  # ...and the answer instructions it carried
    # Retrieve from the knowledge base as of these collection versions (a replay); None: now.
    kb_as_of: dict[int, int] | None = None
    ab_variant_id: int | None = None  # the A/B test variant it was answered with (none: no test)
    # Every call of the turn to an endpoint that may not see personal data shares these
    # placeholders (chatbot.llm.veil); only their counts are recorded.
    placeholders: Placeholders = field(default_factory=Placeholders)

    def prompts_from(self, prompt: Prompt) -> None:
        self.prompt_version_id = prompt.version_id
        self.instructions_version_id = prompt.instructions_version_id

    def first_piece(self) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = (time.perf_counter() - self.started) * 1000

    @property
    def answer(self) -> str:
        return "".join(self.pieces)

    def total_usage(self) -> Usage:
        steps = self.choice_usage
        return Usage(
            input_tokens=self.usage.input_tokens + steps.input_tokens,
            output_tokens=self.usage.output_tokens + steps.output_tokens,
            estimated=self.usage.estimated or steps.estimated,
        )

    def result(self) -> records.TurnResult:
        route, grounding, answer = self.route, self.grounding, self.answer
        usage = self.total_usage()
        citations = _citations(grounding, answer) if grounding else []
        if self.cache is not None and self.cache.entry_id is not None:
            citations = self.cache.citations  # a cached answer cites what its original did
        return records.TurnResult(
            status=self.status,
            answer=answer,
            usage=usage,
            cost=(usage_cost(route.endpoint, self.usage) if route else Decimal(0))
            + self.choice_cost,
            ttft_ms=self.ttft_ms,
            total_ms=(time.perf_counter() - self.started) * 1000,
            error=self.error,
            endpoint_id=route.endpoint.id if route else self.choice_endpoint_id,
            route_reason=route.reason if route else (grounding.reason if grounding else ""),
            no_answer=bool(grounding and grounding.no_answer),
            kb_versions=grounding.kb_versions if grounding else {},
            citations=citations,
            hand_over=self.hand_over,
            cache=self.cache,
            prompt_version_id=self.prompt_version_id,
            # The answer instructions reach the model only with passages or tool results.
            answer_version_id=self.instructions_version_id
            if (grounding is not None and grounding.hits) or self.called
            else None,
            ab_variant_id=self.ab_variant_id,
            redacted=self.placeholders.redacted,
        )


def _prepare(
    turn_id: int,
    requested_model: str | None,
    prompt: Prompt | None,
    tracer: Tracer,
    looked: CacheLookup | None = None,
    as_of: dict[int, int] | None = None,
) -> Prepared:
    # One hop to a thread for everything before the model call: the history, retrieval as the
    # conversation's owner, then the route. What the cache lookup read (the prompt, the person,
    # the settings, maybe the question's vector) is not read again.
    asker = looked.user if looked is not None else None
    return turn_prepare(
        asker=lambda: asker or turn_asker(turn_id)[0],
        prompt=looked.prompt if looked is not None else (prompt or prompt_for_turn(turn_id)),
        tracer=tracer,
        requested_model=requested_model,
        config=looked.config if looked is not None else None,
        query_vector=looked.vector if looked is not None else None,
        as_of=as_of,
    )


def _start(
    turn_id: int, requested_model: str | None, takes_part: bool
) -> tuple[abtest.Applied | None, Plan | None]:
    """One hop to a thread: the A/B test variant the turn is answered with (when it takes part),
    then the agent's plan with the variant's model."""
    variant = abtest.variant_for_turn(turn_id=turn_id) if takes_part else None
    if variant is not None:
        requested_model = variant.requested_model
    return variant, agent_plan(turn_id, requested_model)


def _citations(grounding: Grounding, answer: str) -> list[records.CitationRecord]:
    cited = cited_numbers(answer, available=len(grounding.hits))
    return [
        records.CitationRecord(
            chunk_id=hit.chunk_id,
            number=number,
            score=hit.score,
            similarity=hit.similarity,
            cited=number in cited,
        )
        for number, hit in enumerate(grounding.hits, start=1)
    ]


async def _stream(
    run: _Run, route: Route, prompt: Prompt, emit: Emit, overrides: Overrides | None
) -> None:
    """Ask the routed model and pass each piece on. A failure before the first piece moves on to
    the route's next attempt (`chatbot.agent.fallback`: retries with backoff, then the fallback
    list), each attempt its own span; after it, the error ends the turn."""
    # Recorded while the model works on its first token, not before asking it.
    run.marking = asyncio.ensure_future(
        db_sync_to_async(records.turn_mark_streaming)(
            turn_id=run.turn_id, endpoint_id=route.endpoint.id, route_reason=route.reason
        )
    )
    for attempt in fallback.attempts(route):
        if attempt.wait_s:
            await asyncio.sleep(attempt.wait_s)
        try:
            await _stream_once(run, route, attempt, prompt, emit, overrides)
        except ModelError:
            if run.pieces or attempt.last:
                raise
            continue
        run.route = fallback.fallen_back(route, attempt)
        return


async def _stream_once(
    run: _Run,
    route: Route,
    attempt: fallback.Attempt,
    prompt: Prompt,
    emit: Emit,
    overrides: Overrides | None,
) -> None:
    """One attempt; its span gets tokens and cost even when the stream is stopped half-way."""
    endpoint = attempt.endpoint
    with run.tracer.span(
        "llm",
        endpoint.name,
        **endpoint.span_attributes(),
        **fallback.attempt_attributes(route, attempt),
    ) as span:
        stream = astream_text(endpoint, prompt, run.usage, overrides=overrides)
        try:
            async for text in fallback.first_piece_within(
                stream, route.first_token_timeout_s, endpoint
            ):
                if run.ttft_ms is None:
                    run.first_piece()
                    span.attributes["ttft_ms"] = round(run.ttft_ms or 0.0, 2)
                run.pieces.append(text)
                await emit(text)
        finally:
            _usage_settle(run, prompt, span)
            span.cost = usage_cost(endpoint, run.usage)
            if not endpoint.personal_data_allowed:
                # Types and counts only: the values never reach a span.
                span.attributes["redacted"] = run.placeholders.redacted


def _usage_settle(run: _Run, prompt: Prompt, span: SpanRecord) -> None:
    usage = run.usage
    if run.pieces and not (usage.input_tokens or usage.output_tokens):
        # Stopped mid-stream: the server's counts never came, estimate them.
        usage.input_tokens = estimate_tokens("".join(m.content for m in prompt.messages))
        usage.output_tokens = estimate_tokens(run.answer)
        usage.estimated = True
    span.tokens_in = usage.input_tokens
    span.tokens_out = usage.output_tokens
    span.attributes["tokens_estimated"] = usage.estimated


def _tools_cited(run: _Run) -> None:
    """Mark on each tool call's span whether the answer cited its result."""
    if not run.called:
        return
    hits = len(run.grounding.hits) if run.grounding else 0
    cited = cited_numbers(run.answer, available=hits + len(run.called))
    for called in run.called:
        called.span.attributes["cited"] = called.span.attributes.get("number") in cited


async def _say(run: _Run, emit: Emit, text: str) -> None:
    run.first_piece()
    run.pieces.append(text)
    await emit(text)


async def _agent(
    run: _Run,
    root: SpanRecord,
    emit: Emit,
    plan: Plan,
    prompt: Prompt | None,
    overrides: Overrides | None,
    on_step: StepEmit | None,
    variant: abtest.Applied | None = None,
) -> bool:
    """The agent's steps, then its answer; False when it gathered nothing (or only results that
    found nothing), leaving the turn to the plain pipeline (which grounds the question itself)."""
    asked = prompt or await db_sync_to_async(prompt_for_turn)(run.turn_id)
    run.prompts_from(asked)
    end, run.choice_usage = await agent_steps(
        plan=plan,
        prompt=asked,
        tracer=run.tracer,
        turn_id=run.turn_id,
        on_step=on_step,
        kb_as_of=run.kb_as_of,
        config=variant.config if variant is not None else None,
    )
    run.choice_cost = end.cost
    root.attributes["agent"] = end.kind
    chose = end.route or plan.route
    if run.choice_usage.input_tokens or run.choice_usage.output_tokens:
        run.choice_endpoint_id = chose.endpoint.id
    if end.kind == "plain":
        return False
    run.route = end.route or plan.route  # the rules route each step; the answer is one
    root.attributes.update(route=run.route.reason, endpoint=run.route.endpoint.name)
    if end.kind == "ask":
        await _say(run, emit, end.text)
        return True
    if end.kind == "hand_over":
        run.hand_over = end.text or "the assistant handed over"
        await _say(run, emit, HAND_OVER_MESSAGE.format(reason=run.hand_over))
        return True
    assert end.prompt is not None
    run.grounding, run.called = end.grounding, end.called
    if end.grounding is not None:
        root.attributes["grounding"] = end.grounding.reason
    await _stream(run, run.route, end.prompt, emit, overrides)
    _tools_cited(run)
    return True


@dataclass
class _Begun:
    """What the turn's first hop to a thread found (`_begin`)."""

    variant: abtest.Applied | None
    plan: Plan | None
    looked: CacheLookup | None = None
    prepared: Prepared | None = None
    # Preparing failed after the cache was asked: raised once the lookup is on the record.
    failed: Exception | None = None


def _cache_may_serve(
    prompt: Prompt | None, overrides: Overrides | None, as_of: dict[int, int] | None
) -> bool:
    """Only the plain pipeline's own prompt and settings (or the variant's) may be answered from
    the cache: an earlier judged answer given under the same ones may do."""
    return prompt is None and overrides is None and as_of is None


def _lookup(
    turn_id: int,
    requested_model: str | None,
    asked: Prompt | None,
    variant: abtest.Applied | None,
) -> CacheLookup:
    return answer_cache_lookup(
        turn_id=turn_id,
        requested_model=requested_model,
        prompt=asked,
        config=variant.config if variant else None,
    )


def _begin(
    turn_id: int,
    requested_model: str | None,
    prompt: Prompt | None,
    overrides: Overrides | None,
    tracer: Tracer,
    as_of: dict[int, int] | None,
    takes_part: bool,
) -> _Begun:
    """One hop to a thread for everything before the model call, where the agent has no steps to
    take: the variant and the plan (`_start`), the cache lookup, then the history, retrieval and
    route (`_prepare`). Each thread hop costs a switch and the event loop's attention; the turn
    used to make three before its first token. With a plan, only `_start` runs here: the agent's
    steps come first, and the pipeline's own steps follow only if it answers plainly."""
    variant, plan = _start(turn_id, requested_model, takes_part)
    begun = _Begun(variant=variant, plan=plan)
    if plan is not None:
        return begun
    if variant is not None:
        requested_model = variant.requested_model
    asked = prompt or (variant.prompt if variant else None)
    if _cache_may_serve(prompt, overrides, as_of):
        begun.looked = _lookup(turn_id, requested_model, asked, variant)
        if begun.looked.hit is not None:
            return begun
    try:
        begun.prepared = _prepare(turn_id, requested_model, asked, tracer, begun.looked, as_of)
    except Exception as exc:  # raised by the caller, after the lookup's attributes are recorded
        begun.failed = exc
    return begun


async def _answer(
    run: _Run,
    root: SpanRecord,
    emit: Emit,
    requested_model: str | None,
    prompt: Prompt | None,
    overrides: Overrides | None,
    on_step: StepEmit | None = None,
) -> None:
    if prompt is not None:
        # The caller wrote the system prompt (the OpenAI-compatible API, a replay): keep it with
        # the turn, so its trace explains the answer.
        root.attributes["system_prompt"] = "\n\n".join(
            m.content for m in prompt.messages if m.role == "system"
        )
    # Only turns the product builds itself take part in an A/B test (chatbot.agent.abtest).
    takes_part = prompt is None and requested_model is None and overrides is None
    begun = await db_sync_to_async(_begin)(
        run.turn_id, requested_model, prompt, overrides, run.tracer, run.kb_as_of, takes_part
    )
    variant, plan = begun.variant, begun.plan
    if variant is not None:
        run.ab_variant_id, requested_model = variant.variant_id, variant.requested_model
        root.attributes.update(variant.attributes)
    asked = prompt or (variant.prompt if variant else None)
    if plan is not None and await _agent(run, root, emit, plan, asked, overrides, on_step, variant):
        return
    looked = begun.looked
    if plan is not None and _cache_may_serve(prompt, overrides, run.kb_as_of):
        looked = await db_sync_to_async(_lookup)(run.turn_id, requested_model, asked, variant)
    if looked is not None:
        root.attributes.update(looked.attributes)
        run.cache = looked.mark
        run.prompts_from(looked.prompt)
        if looked.hit is not None:
            await _cached(run, emit, looked)
            return
    if begun.failed is not None:
        raise begun.failed
    prepared = begun.prepared or await db_sync_to_async(_prepare)(
        run.turn_id, requested_model, asked, run.tracer, looked, run.kb_as_of
    )
    run.grounding, run.route = prepared.grounding, prepared.route
    run.prompts_from(prepared.prompt)
    root.attributes["grounding"] = prepared.grounding.reason
    if prepared.route is None:
        # Nothing relevant in the knowledge base: say so instead of letting a model guess.
        await _say(run, emit, prepared.grounding.no_answer_message)
        return
    root.attributes.update(route=prepared.route.reason, endpoint=prepared.route.endpoint.name)
    await _stream(run, prepared.route, prepared.prompt, emit, overrides)


async def _cached(run: _Run, emit: Emit, looked: CacheLookup) -> None:
    """Answer from the cache: the whole answer at once, no model called, zero tokens."""
    hit, scope = looked.hit, looked.scope
    assert hit is not None and scope is not None and looked.route is not None
    reason = f"answer cache ({hit.match} hit of turn {hit.source_turn_id})"
    run.route = Route(looked.route.endpoint, reason)
    run.grounding = Grounding(
        mode=looked.config.grounding, kb_versions=scope.kb_versions, reason=reason
    )
    with run.tracer.span(
        "cache",
        f"answer cache: {hit.match} hit",
        match=hit.match,
        similarity=hit.similarity,
        entry_id=hit.entry_id,
        source_turn_id=hit.source_turn_id,
        source_endpoint_id=hit.source_endpoint_id,
        saved_tokens=hit.saved_tokens,
        saved_cost=str(hit.saved_cost),
    ):
        await _say(run, emit, hit.answer)


async def _save(run: _Run, *, replay: bool) -> None:
    result = run.result()
    if run.marking is not None:
        # Ordered before the final write, so "streaming" can never overwrite the outcome.
        with suppress(Exception):
            await run.marking
    await db_sync_to_async(records.turn_finish)(
        turn_id=run.turn_id, result=result, tracer=run.tracer
    )
    if not replay:
        turn_observe(
            model=run.route.endpoint.name if run.route else "",
            status=result.status,
            total_ms=result.total_ms,
            ttft_ms=result.ttft_ms,
            tokens_in=result.usage.input_tokens,
            tokens_out=result.usage.output_tokens,
            cost=float(result.cost),
        )


@turn_logging
async def turn_run(
    *,
    turn_id: int,
    emit: Emit,
    requested_model: str | None = None,
    prompt: Prompt | None = None,
    overrides: Overrides | None = None,
    replay: bool = False,
    on_step: StepEmit | None = None,
    as_of: dict[int, int] | None = None,
) -> TurnOutcome:
    """Run one saved turn to its end. Returns how it ended; re-raises cancellation after saving.

    `prompt` replaces the one built from the conversation (the OpenAI-compatible API sends its
    own; replays choose a system prompt). `replay` marks a re-run of a past turn: kept out of
    /metrics. `on_step` hears of each tool call the agent makes, as it starts and ends. `as_of`
    ({collection id: version}) retrieves from the knowledge base as it was at those versions,
    the agent's search tool too; the answer cache, which serves today's, is not asked."""
    run = _Run(turn_id=turn_id, kb_as_of=as_of)
    with run.tracer.span("agent", "turn") as root, veiled(run.placeholders):
        try:
            await _answer(run, root, emit, requested_model, prompt, overrides, on_step)
        except asyncio.CancelledError:
            run.status, run.cancelled = Turn.Status.CANCELLED, True
            root.error = ""
        except ModelError as exc:
            run.status, run.error = Turn.Status.FAILED, exc.user_message
            root.attributes["error_detail"] = exc.detail
            logger.warning("turn %s failed: %s", turn_id, exc.detail)
        except Exception as exc:  # a bug of ours must still leave the turn recorded as failed
            run.status, run.error = Turn.Status.FAILED, CRASH_MESSAGE
            root.attributes["error_detail"] = f"{type(exc).__name__}: {exc}"
            logger.exception("turn %s crashed", turn_id)

    # Saving must finish even when the caller is being cancelled (a closed browser tab).
    save = asyncio.ensure_future(_save(run, replay=replay))
    try:
        await asyncio.shield(save)
    except asyncio.CancelledError:
        await save
        raise
    if run.cancelled:
        raise asyncio.CancelledError
    return TurnOutcome(
        turn_id=turn_id,
        status=run.status,
        answer=run.answer,
        error=run.error,
        endpoint_name=run.route.endpoint.name if run.route else "",
        usage=run.total_usage(),
    )
