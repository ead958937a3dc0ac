"""Reads for conversations and turns. Ownership is checked here, once."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Prefetch, Q, QuerySet

from chatbot.models import Citation, Conversation, Escalation, Feedback, Span, Turn

AnyUser = AbstractBaseUser | AnonymousUser


def conversations_for(user: AnyUser) -> QuerySet[Conversation]:
    # Replays (observability) re-ask a person's questions in conversations of their own: not theirs
    # to see or continue.
    # A conversation its owner deleted but others rely on (reviews, escalations) is hidden.
    return Conversation.objects.filter(
        owner_id=user.pk, is_replay=False, hidden_at__isnull=True
    ).order_by("-updated_at")


def conversation_get_for(user: AnyUser, conversation_id: object) -> Conversation:
    """The user's own conversation; anyone else's is indistinguishable from a missing one."""
    try:
        pk = int(conversation_id)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise Conversation.DoesNotExist from None
    return Conversation.objects.get(
        pk=pk, owner_id=user.pk, is_replay=False, hidden_at__isnull=True
    )


def _citations() -> Prefetch:
    return Prefetch(
        "citations",
        queryset=Citation.objects.select_related("chunk__document").order_by("number"),
    )


def _tool_spans() -> Prefetch:
    return Prefetch(
        "spans",
        queryset=Span.objects.filter(kind=Span.Kind.TOOL).order_by("started_at"),
        to_attr="tool_spans",
    )


def turns_for(conversation: Conversation, user: AnyUser) -> QuerySet[Turn]:
    return conversation.turns.select_related(
        "endpoint", "escalation__claimed_by", "escalation__answered_by"
    ).prefetch_related(
        Prefetch(
            "feedback",
            queryset=Feedback.objects.filter(user_id=user.pk or 0),
            to_attr="my_feedback",
        ),
        _citations(),
        _tool_spans(),
    )


def turn_with_sources(turn: Turn) -> Turn:
    """The same turn with its citations (and their chunks and documents) loaded."""
    return (
        Turn.objects.select_related("escalation__claimed_by", "escalation__answered_by")
        .prefetch_related(_citations(), _tool_spans())
        .get(pk=turn.pk)
    )


def escalation_of(turn: Turn) -> Escalation | None:
    """The turn's escalation with the people its block names (who claimed it, who replied)."""
    return Escalation.objects.select_related("claimed_by", "answered_by").filter(turn=turn).first()


def escalation_counts() -> dict[str, int]:
    """How many escalations are in each state now, and how many wait for a human (not
    resolved), in one query: the inbox's header and the dashboard's tile."""
    status = Escalation.Status
    counts = Escalation.objects.aggregate(
        **{s.value: Count("pk", filter=Q(status=s.value)) for s in status}
    )
    counts["waiting"] = sum(counts[s.value] for s in status if s != status.RESOLVED)
    return counts


def escalations_count(*, status: str | None = Escalation.Status.OPEN) -> int:
    queryset = Escalation.objects.all()
    if status is not None:
        queryset = queryset.filter(status=status)
    return queryset.count()


def turn_get_for(user: AnyUser, turn_id: object) -> Turn:
    try:
        pk = int(turn_id)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise Turn.DoesNotExist from None
    return Turn.objects.select_related("conversation").get(
        pk=pk, conversation__owner_id=user.pk, is_replay=False, conversation__hidden_at__isnull=True
    )
