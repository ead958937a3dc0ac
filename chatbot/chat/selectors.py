"""Reads for conversations and turns. Ownership is checked here, once."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Prefetch, Q, QuerySet, Subquery

from chatbot.llm.prompts import DEFAULT_SYSTEM_PROMPT
from chatbot.llm.types import Message, Prompt
from chatbot.models import Citation, Conversation, Escalation, Feedback, Turn

AnyUser = AbstractBaseUser | AnonymousUser


def conversations_for(user: AnyUser) -> QuerySet[Conversation]:
    # Replays (observability) re-ask a person's questions in conversations of their own: not theirs
    # to see or continue.
    return Conversation.objects.filter(owner_id=user.pk, is_replay=False).order_by("-updated_at")


def conversation_get_for(user: AnyUser, conversation_id: object) -> Conversation:
    """The user's own conversation; anyone else's is indistinguishable from a missing one."""
    try:
        pk = int(conversation_id)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise Conversation.DoesNotExist from None
    return Conversation.objects.get(pk=pk, owner_id=user.pk, is_replay=False)


def _citations() -> Prefetch:
    return Prefetch(
        "citations",
        queryset=Citation.objects.select_related("chunk__document").order_by("number"),
    )


def turns_for(conversation: Conversation, user: AnyUser) -> QuerySet[Turn]:
    return conversation.turns.select_related("endpoint", "escalation").prefetch_related(
        Prefetch(
            "feedback",
            queryset=Feedback.objects.filter(user_id=user.pk or 0),
            to_attr="my_feedback",
        ),
        _citations(),
    )


def turn_with_sources(turn: Turn) -> Turn:
    """The same turn with its citations (and their chunks and documents) loaded."""
    return Turn.objects.select_related("escalation").prefetch_related(_citations()).get(pk=turn.pk)


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
        pk=pk, conversation__owner_id=user.pk, is_replay=False
    )


def prompt_for_turn(turn_id: int) -> Prompt:
    """System prompt, the last few finished exchanges of the conversation, then the question.

    One query (the turn itself and its history together): it runs before every model call.
    """
    conversation = Turn.objects.filter(pk=turn_id).values("conversation_id")
    rows = list(
        Turn.objects.filter(conversation_id=Subquery(conversation[:1]), pk__lte=turn_id)
        .filter(Q(pk=turn_id) | Q(status=Turn.Status.DONE))
        .order_by("-pk")
        .values_list("pk", "user_text", "answer")[: settings.CHAT_HISTORY_TURNS + 1]
    )
    if not rows or rows[0][0] != turn_id:
        raise Turn.DoesNotExist(f"turn {turn_id} does not exist")
    messages: list[Message] = [Message("system", DEFAULT_SYSTEM_PROMPT)]
    for _, question, answer in reversed(rows[1:]):
        messages += [Message("user", question), Message("assistant", answer)]
    messages.append(Message("user", rows[0][1]))
    return Prompt(tuple(messages))
