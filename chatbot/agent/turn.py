"""The turn loop: route, call the model, stream the answer, then record everything about the turn.

Callers (the websocket consumer, the API's SSE and JSON routes, the OpenAI-compatible route) create
the turn first and pass an `emit` callback that sends each piece of text wherever it goes.
The database is touched once before the model call and once after the stream, never per token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from decimal import Decimal

from asgiref.sync import sync_to_async
from django.contrib.auth.models import User

from chatbot.agent.grounding import (
    Grounding,
    cited_numbers,
    ground,
    prompt_with_context,
)
from chatbot.chat import selectors, services
from chatbot.llm.pricing import estimate_tokens, usage_cost
from chatbot.llm.router import Route, route_choose
from chatbot.llm.stream import astream_text
from chatbot.llm.types import ModelError, Overrides, Prompt, Usage
from chatbot.models import Turn
from observability.logs import turn_logging
from observability.metrics import turn_observe
from observability.tracing import Tracer

logger = logging.getLogger(__name__)

Emit = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class TurnOutcome:
    turn_id: int
    status: str
    answer: str
    error: str
    endpoint_name: str
    usage: Usage


@dataclass
class Prepared:
    prompt: Prompt
    grounding: Grounding
    route: Route | None  # None when there is nothing to ask a model (no answer in the KB)


def _prepare(
    turn_id: int, requested_model: str | None, prompt: Prompt | None, tracer: Tracer
) -> Prepared:
    # Everything needed before the model can be called, in one hop to a thread: the history,
    # retrieval as the conversation's owner, then the route.
    prompt = prompt or selectors.prompt_for_turn(turn_id)
    grounding = ground(
        user=lambda: User.objects.get(conversations__turns=turn_id),
        question=prompt.question,
        tracer=tracer,
    )
    if grounding.no_answer:
        return Prepared(prompt=prompt, grounding=grounding, route=None)
    route = route_choose(requested=requested_model)
    prompt = prompt_with_context(grounding, prompt, route.endpoint)
    return Prepared(prompt=prompt, grounding=grounding, route=route)


def _citations(grounding: Grounding, answer: str) -> list[services.CitationRecord]:
    cited = cited_numbers(answer, available=len(grounding.hits))
    return [
        services.CitationRecord(
            chunk_id=hit.chunk_id,
            number=number,
            score=hit.score,
            similarity=hit.similarity,
            cited=number in cited,
        )
        for number, hit in enumerate(grounding.hits, start=1)
    ]


@turn_logging
async def turn_run(
    *,
    turn_id: int,
    emit: Emit,
    requested_model: str | None = None,
    prompt: Prompt | None = None,
    overrides: Overrides | None = None,
    replay: bool = False,
) -> TurnOutcome:
    """Run one saved turn to its end. Returns how it ended; re-raises cancellation after saving.

    `replay` marks a re-run of a past turn (observability.replay): kept out of /metrics."""
    tracer = Tracer()
    usage = Usage()
    pieces: list[str] = []
    started = time.perf_counter()
    ttft_ms: float | None = None
    route: Route | None = None
    grounding: Grounding | None = None
    status, error = Turn.Status.DONE, ""
    cancelled = False
    marking: asyncio.Future[None] | None = None
    with tracer.span("agent", "turn") as root:
        try:
            prepared = await sync_to_async(_prepare)(turn_id, requested_model, prompt, tracer)
            grounding, route = prepared.grounding, prepared.route
            root.attributes["grounding"] = grounding.reason
            if route is None:
                # Nothing relevant in the knowledge base: say so instead of letting a model guess.
                ttft_ms = (time.perf_counter() - started) * 1000
                pieces.append(grounding.no_answer_message)
                await emit(grounding.no_answer_message)
            else:
                endpoint, prompt = route.endpoint, prepared.prompt
                # Recorded while the model works on its first token, not before asking it.
                marking = asyncio.ensure_future(
                    sync_to_async(services.turn_mark_streaming)(
                        turn_id=turn_id, endpoint_id=endpoint.id, route_reason=route.reason
                    )
                )
                root.attributes.update(route=route.reason, endpoint=endpoint.name)
                with tracer.span(
                    "llm",
                    endpoint.name,
                    model=endpoint.model_id,
                    provider=endpoint.provider,
                    style=endpoint.style,
                    region=endpoint.region,
                ) as llm_span:
                    try:
                        async for text in astream_text(
                            endpoint, prompt, usage, overrides=overrides
                        ):
                            if ttft_ms is None:
                                ttft_ms = (time.perf_counter() - started) * 1000
                                llm_span.attributes["ttft_ms"] = round(ttft_ms, 2)
                            pieces.append(text)
                            await emit(text)
                    finally:
                        if pieces and not (usage.input_tokens or usage.output_tokens):
                            # Stopped mid-stream: the server's counts never came, estimate them.
                            usage.input_tokens = estimate_tokens(
                                "".join(m.content for m in prompt.messages)
                            )
                            usage.output_tokens = estimate_tokens("".join(pieces))
                            usage.estimated = True
                        llm_span.tokens_in = usage.input_tokens
                        llm_span.tokens_out = usage.output_tokens
                        llm_span.cost = usage_cost(endpoint, usage)
                        llm_span.attributes["tokens_estimated"] = usage.estimated
        except asyncio.CancelledError:
            status, cancelled = Turn.Status.CANCELLED, True
            root.error = ""
        except ModelError as exc:
            status, error = Turn.Status.FAILED, exc.user_message
            root.attributes["error_detail"] = exc.detail
            logger.warning("turn %s failed: %s", turn_id, exc.detail)
        except Exception as exc:  # a bug of ours must still leave the turn recorded as failed
            status, error = (
                Turn.Status.FAILED,
                "Something went wrong on our side. Please try again.",
            )
            root.attributes["error_detail"] = f"{type(exc).__name__}: {exc}"
            logger.exception("turn %s crashed", turn_id)
    answer = "".join(pieces)
    result = services.TurnResult(
        status=status,
        answer=answer,
        usage=usage,
        cost=usage_cost(route.endpoint, usage) if route else Decimal(0),
        ttft_ms=ttft_ms,
        total_ms=(time.perf_counter() - started) * 1000,
        error=error,
        endpoint_id=route.endpoint.id if route else None,
        route_reason=route.reason if route else (grounding.reason if grounding else ""),
        no_answer=bool(grounding and grounding.no_answer),
        kb_versions=grounding.kb_versions if grounding else {},
        citations=_citations(grounding, answer) if grounding else [],
    )

    async def _save() -> None:
        if marking is not None:
            # Ordered before the final write, so "streaming" can never overwrite the outcome.
            with suppress(Exception):
                await marking
        await sync_to_async(services.turn_finish)(turn_id=turn_id, result=result, tracer=tracer)
        if not replay:
            turn_observe(result=result, model=route.endpoint.name if route else "", tracer=tracer)

    # Saving must finish even when the caller is being cancelled (a closed browser tab).
    save = asyncio.ensure_future(_save())
    try:
        await asyncio.shield(save)
    except asyncio.CancelledError:
        await save
        raise
    if cancelled:
        raise asyncio.CancelledError
    return TurnOutcome(
        turn_id=turn_id,
        status=status,
        answer=answer,
        error=error,
        endpoint_name=route.endpoint.name if route else "",
        usage=usage,
    )
