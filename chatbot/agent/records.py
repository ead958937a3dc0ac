"""Writes the turn loop makes about the turn it runs: the route once known, and the outcome with
its spans and citations in one transaction after the answer has streamed."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from chatbot import hooks
from chatbot.llm.types import Usage
from chatbot.models import AnswerCacheEntry, Chunk, Citation, Escalation, Turn
from chatbot.runtime.db import commit_unflushed
from chatbot.telemetry.tracing import Tracer, spans_save


def turn_mark_streaming(*, turn_id: int, endpoint_id: int, route_reason: str) -> None:
    # While the model works on its first token; the turn's final save flushes it to disk.
    with commit_unflushed():
        Turn.objects.filter(pk=turn_id).update(
            status=Turn.Status.STREAMING, endpoint_id=endpoint_id, route_reason=route_reason
        )


@dataclass(frozen=True)
class CitationRecord:
    chunk_id: int
    number: int
    score: float
    similarity: float | None
    cited: bool


@dataclass(frozen=True)
class CacheMark:
    """What a turn records about the answer cache (`chatbot.agent.cache`): a miss, or a hit with
    the entry and turn it repeated, what that answer cost, and the passages to cite again."""

    result: str
    entry_id: int | None = None
    cached_from_id: int | None = None
    saved_tokens: int = 0
    saved_cost: Decimal = Decimal(0)
    citations: list[CitationRecord] = field(default_factory=list)


@dataclass
class TurnResult:
    status: str
    answer: str
    usage: Usage
    cost: Decimal
    ttft_ms: float | None
    total_ms: float
    error: str = ""
    endpoint_id: int | None = None
    route_reason: str = ""
    no_answer: bool = False
    kb_versions: dict[str, int] = field(default_factory=dict)
    citations: list[CitationRecord] = field(default_factory=list)
    # The agent handed the turn to a human, for this reason: an escalation lands in the inbox.
    hand_over: str = ""
    cache: CacheMark | None = None
    prompt_version_id: int | None = None
    answer_version_id: int | None = None  # the answer instructions sent with the passages
    # The A/B test variant the turn was answered with (`chatbot.agent.abtest`); None: no test.
    ab_variant_id: int | None = None
    # Personal data replaced before text left for a model, {entity type: count}; {} when none.
    redacted: dict[str, int] = field(default_factory=dict)


@transaction.atomic
def turn_finish(*, turn_id: int, result: TurnResult, tracer: Tracer) -> None:
    """Record the outcome and the spans in one transaction, after the answer has streamed."""
    fields: dict[str, object] = {
        "status": result.status,
        "answer": result.answer,
        "tokens_in": result.usage.input_tokens,
        "tokens_out": result.usage.output_tokens,
        "tokens_estimated": result.usage.estimated,
        "cost": result.cost,
        "ttft_ms": result.ttft_ms,
        "total_ms": result.total_ms,
        "error": result.error,
        "no_answer": result.no_answer,
        "kb_versions": result.kb_versions,
        "redacted": result.redacted,
        "finished_at": timezone.now(),
    }
    if result.endpoint_id is not None:
        fields["endpoint_id"] = result.endpoint_id
    if result.prompt_version_id is not None:
        fields["prompt_version_id"] = result.prompt_version_id
    if result.answer_version_id is not None:
        fields["answer_version_id"] = result.answer_version_id
    if result.ab_variant_id is not None:
        fields["ab_variant_id"] = result.ab_variant_id
    if result.route_reason:
        fields["route_reason"] = result.route_reason[:200]
    if result.cache is not None:
        _cache_mark(fields, result.cache)
    Turn.objects.filter(pk=turn_id).update(**fields)
    spans_save(turn_id=turn_id, tracer=tracer)
    _citations_save(turn_id=turn_id, citations=result.citations)
    if result.hand_over:
        _hand_over(turn_id=turn_id, reason=result.hand_over)
    # Evaluation judges the answer in the background (its hook, after the commit); nothing it
    # does can reach the chat.
    hooks.fire_on_commit(hooks.turn_finished, turn_id=turn_id, status=result.status)


def _cache_mark(fields: dict[str, object], mark: CacheMark) -> None:
    fields.update(
        cache_result=mark.result,
        cached_from_id=mark.cached_from_id,
        saved_tokens=mark.saved_tokens,
        saved_cost=mark.saved_cost,
    )
    if mark.entry_id is not None:
        AnswerCacheEntry.objects.filter(pk=mark.entry_id).update(
            hits=F("hits") + 1, last_hit_at=timezone.now()
        )


def _citations_save(*, turn_id: int, citations: list[CitationRecord]) -> None:
    if not citations:
        return
    # A source deleted while the answer streamed took its chunks with it: cite only what is left.
    alive = set(
        Chunk.objects.filter(pk__in=[c.chunk_id for c in citations]).values_list("pk", flat=True)
    )
    Citation.objects.bulk_create(
        Citation(
            turn_id=turn_id,
            chunk_id=c.chunk_id,
            number=c.number,
            score=c.score,
            similarity=c.similarity,
            cited=c.cited,
        )
        for c in citations
        if c.chunk_id in alive
    )


def _hand_over(*, turn_id: int, reason: str) -> None:
    """The agent's "hand over" step lands where the "Needs a human" button does."""
    asker = Turn.objects.filter(pk=turn_id).values_list("conversation__owner_id", flat=True)[0]
    Escalation.objects.get_or_create(
        turn_id=turn_id,
        defaults={
            "requested_by_id": asker,
            "reason": f"The assistant handed over: {reason}"[:2000],
        },
    )
    hooks.fire_on_commit(hooks.escalation_requested, turn_id=turn_id)
