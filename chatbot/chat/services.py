"""Writes for conversations, turns and feedback. Views, consumers, API routes and tasks call these."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from chatbot.llm.types import Usage
from chatbot.models import Conversation, Feedback, Turn
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
        "finished_at": timezone.now(),
    }
    if result.endpoint_id is not None:
        fields["endpoint_id"] = result.endpoint_id
        fields["route_reason"] = result.route_reason
    Turn.objects.filter(pk=turn_id).update(**fields)
    spans_save(turn_id=turn_id, tracer=tracer)


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
    return feedback


STALE_AFTER = timedelta(minutes=10)
STALE_MESSAGE = "The answer was interrupted (the server restarted). Please ask again."


def turns_expire_stale(*, older_than: timedelta = STALE_AFTER) -> int:
    """Turns left pending or streaming by a process that died are closed, so none hangs forever."""
    cutoff = timezone.now() - older_than
    return Turn.objects.filter(
        status__in=[Turn.Status.PENDING, Turn.Status.STREAMING], created_at__lt=cutoff
    ).update(status=Turn.Status.FAILED, error=STALE_MESSAGE, finished_at=timezone.now())
