"""Writes for conversations, turns and feedback. Views, consumers, API routes and tasks call these."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from chatbot.llm.types import Usage
from chatbot.models import Chunk, Citation, Conversation, Escalation, Feedback, Turn
from observability.tracing import Tracer, spans_save


class InvalidInput(ValueError):
    """Bad input from a person or program; the message is shown to them as it is."""


TITLE_LENGTH = 60


def message_validate(text: object) -> str:
    if not isinstance(text, str):
        raise InvalidInput("The message must be text.")
    cleaned = text.strip()
    if not cleaned:
        raise InvalidInput("The message is empty. Type a question first.")
    limit = settings.CHAT_MAX_MESSAGE_CHARS
    if len(cleaned) > limit:
        raise InvalidInput(
            f"The message is too long ({len(cleaned):,} characters); the limit is {limit:,}."
        )
    return cleaned


def conversation_create(
    *,
    owner: User,
    title: str = "",
    channel: str = Conversation.Channel.WEB,
) -> Conversation:
    return Conversation.objects.create(owner=owner, title=title.strip()[:200], channel=channel)


def conversation_delete(*, conversation: Conversation) -> None:
    conversation.delete()


@transaction.atomic
def turn_create(*, conversation: Conversation, user_text: object) -> Turn:
    """Save the question before any model is called, so nothing the user sent is lost."""
    text = message_validate(user_text)
    turn = Turn.objects.create(conversation=conversation, user_text=text)
    updates: dict[str, object] = {"updated_at": timezone.now()}
    if not conversation.title:
        title = " ".join(text.split())
        updates["title"] = title if len(title) <= TITLE_LENGTH else title[: TITLE_LENGTH - 1] + "…"
        conversation.title = str(updates["title"])
    Conversation.objects.filter(pk=conversation.pk).update(**updates)
    return turn


def turn_mark_streaming(*, turn_id: int, endpoint_id: int, route_reason: str) -> None:
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
        "finished_at": timezone.now(),
    }
    if result.endpoint_id is not None:
        fields["endpoint_id"] = result.endpoint_id
    if result.route_reason:
        fields["route_reason"] = result.route_reason[:200]
    Turn.objects.filter(pk=turn_id).update(**fields)
    spans_save(turn_id=turn_id, tracer=tracer)
    _citations_save(turn_id=turn_id, citations=result.citations)
    if result.status == Turn.Status.DONE:
        # Judges run in the background once the turn is committed; a broker outage is logged
        # (robust) and never reaches the chat.
        from evaluation.tasks import judge_turn_task

        transaction.on_commit(lambda: judge_turn_task.delay(turn_id), robust=True)


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


ESCALATION_REASON_LIMIT = 2000


def escalation_create(*, turn: Turn, user: User, reason: object = "") -> Escalation:
    """Mark a finished answer as needing a human. Asking again keeps the first request."""
    if reason is None:
        reason = ""
    if not isinstance(reason, str):
        raise InvalidInput("The reason must be text.")
    if len(reason) > ESCALATION_REASON_LIMIT:
        raise InvalidInput("The reason is too long; the limit is 2,000 characters.")
    if not turn.is_finished:
        raise InvalidInput("Wait for the answer to finish, or stop it, before asking for a human.")
    escalation, _ = Escalation.objects.get_or_create(
        turn=turn, defaults={"requested_by": user, "reason": reason.strip()}
    )
    _flag_for_review(turn.pk)
    return escalation


def feedback_set(*, turn: Turn, user: User, rating: object, comment: object = "") -> Feedback:
    """One thumbs per person per answer; sending again changes it."""
    try:
        value = int(rating)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        value = 0
    if value not in (Feedback.Rating.UP, Feedback.Rating.DOWN):
        raise InvalidInput("Rating must be 1 (thumbs up) or -1 (thumbs down).")
    if comment is None:
        comment = ""
    if not isinstance(comment, str):
        raise InvalidInput("The comment must be text.")
    if len(comment) > 2000:
        raise InvalidInput("The comment is too long; the limit is 2,000 characters.")
    if not turn.is_finished:
        raise InvalidInput("Wait for the answer to finish before rating it.")
    feedback, _ = Feedback.objects.update_or_create(
        turn=turn, user=user, defaults={"rating": value, "comment": comment.strip()}
    )
    if value == Feedback.Rating.DOWN:
        _flag_for_review(turn.pk)
    return feedback


def _flag_for_review(turn_id: int) -> None:
    """Put the turn in the review queue once this write is committed. Flagging logs its own
    failures, so a problem there never reaches the person rating or escalating."""
    from evaluation.review.flagging import turn_flag_quietly

    transaction.on_commit(lambda: turn_flag_quietly(turn_id))


STALE_AFTER = timedelta(minutes=10)
STALE_MESSAGE = "The answer was interrupted (the server restarted). Please ask again."


def turns_expire_stale(*, older_than: timedelta = STALE_AFTER) -> int:
    """Turns left pending or streaming by a process that died are closed, so none hangs forever."""
    cutoff = timezone.now() - older_than
    return Turn.objects.filter(
        status__in=[Turn.Status.PENDING, Turn.Status.STREAMING], created_at__lt=cutoff
    ).update(status=Turn.Status.FAILED, error=STALE_MESSAGE, finished_at=timezone.now())
