"""Writes for conversations, turns and feedback. Views, consumers, API routes and tasks call these."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from chatbot import hooks
from chatbot.accounts import roles
from chatbot.agent.cache import answer_cache_retire_turns
from chatbot.chat import live
from chatbot.models import Conversation, Escalation, Feedback, Turn
from chatbot.runtime.db import commit_unflushed


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
    is_replay: bool = False,
) -> Conversation:
    """`is_replay`: a conversation of re-asked questions (observability's replays), kept out of
    its owner's list, the rollups and the review queue."""
    return Conversation.objects.create(
        owner=owner, title=title.strip()[:200], channel=channel, is_replay=is_replay
    )


def conversation_delete(*, conversation: Conversation) -> None:
    """The owner no longer sees the conversation. Turns that others rely on survive: one
    escalated, flagged or reviewed, or the source of a dataset item keeps the whole conversation
    (hidden from its owner) with its spans, judge scores and reviews; otherwise it is deleted."""
    relied_on = (
        Q(escalation__isnull=False)
        | Q(review__isnull=False)
        | Q(reviews__isnull=False)
        | Q(dataset_items__isnull=False)
    )
    if Turn.objects.filter(relied_on, conversation=conversation).exists():
        Conversation.objects.filter(pk=conversation.pk).update(hidden_at=timezone.now())
        conversation.hidden_at = timezone.now()
        # Kept for others, but no longer the owner's: its answers stop serving other askers.
        turn_ids = list(conversation.turns.values_list("pk", flat=True))
        answer_cache_retire_turns(
            turn_ids=turn_ids, reason="its conversation was deleted", copies=False
        )
        return
    conversation.delete()


def turn_create(
    *, conversation: Conversation, user_text: object, replay_of: Turn | None = None
) -> Turn:
    """Save the question before any model is called, so nothing the user sent is lost.

    `replay_of`: the past turn this one asks again (in a replay conversation)."""
    text = message_validate(user_text)
    updates: dict[str, object] = {"updated_at": timezone.now()}
    if not conversation.title:
        title = " ".join(text.split())
        updates["title"] = title if len(title) <= TITLE_LENGTH else title[: TITLE_LENGTH - 1] + "…"
    # Saved before the answer starts, on the path of its first token: one commit that does not
    # wait for the disk (`commit_unflushed`); the turn's final save makes it durable.
    with commit_unflushed():
        turn = Turn.objects.create(
            conversation=conversation,
            user_text=text,
            is_replay=replay_of is not None,
            replay_of=replay_of,
        )
        Conversation.objects.filter(pk=conversation.pk).update(**updates)
    if "title" in updates:
        conversation.title = str(updates["title"])
    return turn


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
    hooks.fire_on_commit(hooks.escalation_requested, turn_id=turn.pk)
    return escalation


ESCALATION_ANSWER_LIMIT = 8000


def _escalation_locked(escalation: Escalation) -> Escalation:
    return (
        Escalation.objects.select_for_update(of=("self",))
        .select_related("claimed_by", "turn")
        .get(pk=escalation.pk)
    )


def _claimed_by_other(escalation: Escalation, user: User) -> bool:
    return escalation.claimed_by_id is not None and escalation.claimed_by_id != user.pk


def _who(user: User | None) -> str:
    return (user.get_full_name() or user.username) if user else "someone"


@transaction.atomic
def escalation_claim(*, escalation: Escalation, user: User) -> Escalation:
    """Take an escalation on: the others in the inbox see who has it. Claiming one's own again
    changes nothing; one claimed by someone else is refused (they can hand it back by resolving
    it, or an admin can release it)."""
    locked = _escalation_locked(escalation)
    if locked.status == Escalation.Status.RESOLVED:
        raise InvalidInput("This escalation is already resolved.")
    if _claimed_by_other(locked, user):
        raise InvalidInput(f"{_who(locked.claimed_by)} has already claimed this escalation.")
    if locked.claimed_by_id is None:
        locked.claimed_by, locked.claimed_at = user, timezone.now()
        if locked.status == Escalation.Status.OPEN:
            locked.status = Escalation.Status.CLAIMED
        locked.save(update_fields=["claimed_by", "claimed_at", "status"])
        _escalation_changed(locked)
    return locked


@transaction.atomic
def escalation_release(*, escalation: Escalation, user: User) -> Escalation:
    """Give a claimed escalation back to the inbox (its claimer, or an admin for anyone's)."""
    locked = _escalation_locked(escalation)
    if locked.status == Escalation.Status.RESOLVED:
        raise InvalidInput("This escalation is already resolved.")
    if locked.claimed_by_id is None:
        return locked
    if not escalation_may_release(locked, user):
        raise InvalidInput(f"Only {_who(locked.claimed_by)} or an admin can release it.")
    locked.claimed_by, locked.claimed_at = None, None
    if locked.status == Escalation.Status.CLAIMED:
        locked.status = Escalation.Status.OPEN
    locked.save(update_fields=["claimed_by", "claimed_at", "status"])
    _escalation_changed(locked)
    return locked


@transaction.atomic
def escalation_answer(*, escalation: Escalation, user: User, text: object) -> Escalation:
    """The human's reply to the asker; it appears in their conversation as soon as it is saved
    (over the Channels layer, so whichever server holds their socket). Answering an open
    escalation claims it; sending again replaces the reply until the escalation is resolved."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("Write a reply first.")
    answer = text.strip()
    if len(answer) > ESCALATION_ANSWER_LIMIT:
        raise InvalidInput(
            f"The reply is too long ({len(answer):,} characters); the limit is "
            f"{ESCALATION_ANSWER_LIMIT:,}."
        )
    locked = _escalation_locked(escalation)
    if locked.status == Escalation.Status.RESOLVED:
        raise InvalidInput("This escalation is already resolved.")
    if _claimed_by_other(locked, user):
        raise InvalidInput(f"{_who(locked.claimed_by)} has claimed this escalation.")
    now = timezone.now()
    if locked.claimed_by_id is None:
        locked.claimed_by, locked.claimed_at = user, now
    locked.answer, locked.answered_by, locked.answered_at = answer, user, now
    locked.status = Escalation.Status.ANSWERED
    locked.save(
        update_fields=["claimed_by", "claimed_at", "answer", "answered_by", "answered_at", "status"]
    )
    _escalation_changed(locked)
    return locked


@transaction.atomic
def escalation_resolve(*, escalation: Escalation, user: User) -> Escalation:
    """Close an escalation (answered here, or handled another way). Resolving twice keeps the
    first time and person."""
    locked = _escalation_locked(escalation)
    if locked.status == Escalation.Status.RESOLVED:
        return locked
    if _claimed_by_other(locked, user) and not user.has_perm(roles.MANAGE_SETTINGS):
        raise InvalidInput(f"{_who(locked.claimed_by)} has claimed this escalation.")
    locked.status = Escalation.Status.RESOLVED
    locked.resolved_by, locked.resolved_at = user, timezone.now()
    locked.save(update_fields=["status", "resolved_by", "resolved_at"])
    _escalation_changed(locked)
    return locked


def _escalation_changed(escalation: Escalation) -> None:
    conversation_id, turn_id = escalation.turn.conversation_id, escalation.turn_id
    transaction.on_commit(lambda: live.escalation_changed(conversation_id, turn_id))


def escalation_may_release(escalation: Escalation, user: User) -> bool:
    """Its claimer may hand a claimed escalation back, and an admin anyone's."""
    return escalation.claimed_by_id is not None and (
        not _claimed_by_other(escalation, user) or user.has_perm(roles.MANAGE_SETTINGS)
    )


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
    hooks.fire_on_commit(hooks.feedback_given, turn_id=turn.pk, rating=value)
    return feedback


STALE_AFTER = timedelta(minutes=10)
STALE_MESSAGE = "The answer was interrupted (the server restarted). Please ask again."


def turns_expire_stale(*, older_than: timedelta = STALE_AFTER) -> int:
    """Turns left pending or streaming by a process that died are closed, so none hangs forever."""
    cutoff = timezone.now() - older_than
    return Turn.objects.filter(
        status__in=[Turn.Status.PENDING, Turn.Status.STREAMING], created_at__lt=cutoff
    ).update(status=Turn.Status.FAILED, error=STALE_MESSAGE, finished_at=timezone.now())
