"""Reads for conversations and turns. Ownership is checked here, once."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Prefetch, QuerySet

from chatbot.llm.prompts import DEFAULT_SYSTEM_PROMPT
from chatbot.llm.types import Message, Prompt
from chatbot.models import Conversation, Feedback, Turn

AnyUser = AbstractBaseUser | AnonymousUser


def conversations_for(user: AnyUser) -> QuerySet[Conversation]:
    return Conversation.objects.filter(owner_id=user.pk).order_by("-updated_at")


def conversation_get_for(user: AnyUser, conversation_id: object) -> Conversation:
    """The user's own conversation; anyone else's is indistinguishable from a missing one."""
    try:
        pk = int(conversation_id)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise Conversation.DoesNotExist from None
    return Conversation.objects.get(pk=pk, owner_id=user.pk)


def turns_for(conversation: Conversation, user: AnyUser) -> QuerySet[Turn]:
    return conversation.turns.select_related("endpoint").prefetch_related(
        Prefetch(
            "feedback",
            queryset=Feedback.objects.filter(user_id=user.pk or 0),
            to_attr="my_feedback",
        )
    )


def turn_get_for(user: AnyUser, turn_id: object) -> Turn:
    try:
        pk = int(turn_id)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise Turn.DoesNotExist from None
    return Turn.objects.select_related("conversation").get(pk=pk, conversation__owner_id=user.pk)


def prompt_for_turn(turn: Turn) -> Prompt:
    """System prompt, the last few finished exchanges of the conversation, then the question."""
    history = list(
        Turn.objects.filter(
            conversation_id=turn.conversation_id,
            status=Turn.Status.DONE,
            created_at__lt=turn.created_at,
        )
        .order_by("-created_at")
        .values_list("user_text", "answer")[: settings.CHAT_HISTORY_TURNS]
    )
    messages: list[Message] = [Message("system", DEFAULT_SYSTEM_PROMPT)]
    for question, answer in reversed(history):
        messages += [Message("user", question), Message("assistant", answer)]
    messages.append(Message("user", turn.user_text))
    return Prompt(tuple(messages))
