"""Review items made the way production makes them: a finished turn, then the flag rules."""

from __future__ import annotations

from django.contrib.auth.models import Group, User

from chatbot.accounts import roles
from chatbot.models import Feedback, FlagRule, Judge, JudgeScore, ReviewItem, Turn
from evaluation.review.flagging import rules_ensure, turn_flag
from tests.evaluation.judging import finished_turn


def rules() -> list[FlagRule]:
    """The default rules with the calibration sample off: which turn ids a 2% sample picks
    depends on the database's id sequence, so tests that want it turn it on themselves."""
    made = rules_ensure()
    FlagRule.objects.filter(kind=FlagRule.Kind.RANDOM_SAMPLE).update(sample_rate=0.0)
    return made


def flagged_item(
    user: User, *, question: str = "How do I reset a forgotten password?", double: bool = False,
    priority: int | None = None, **turn: object,
) -> ReviewItem:  # fmt: skip
    """A turn with a thumbs down from `user`, flagged by the default rules."""
    rules()
    made = finished_turn(user, question=question, **turn)  # type: ignore[arg-type]
    Feedback.objects.create(turn=made, user=user, rating=Feedback.Rating.DOWN)
    item = turn_flag(turn_id=made.pk)
    assert item is not None
    changes: dict[str, object] = {}
    if double:
        changes["reviews_needed"] = 2
    if priority is not None:
        changes["priority"] = priority
    if changes:
        ReviewItem.objects.filter(pk=item.pk).update(**changes)
        item.refresh_from_db()
    return item


def judge_score(turn: Turn, *, name: str, kind: str, passed: bool, version: int = 1) -> JudgeScore:
    judge, _ = Judge.objects.get_or_create(
        name=name, version=version, defaults={"kind": kind, "threshold": 0.5}
    )
    return JudgeScore.objects.create(
        turn=turn,
        judge=judge,
        score=0.9 if passed else 0.1,
        passed=passed,
        status=JudgeScore.Status.DONE,
    )


def reviewer(username: str) -> User:
    """One more reviewer beyond rita, for items that need more hands than the cast has."""
    user = User.objects.create_user(username=username, password="x-reviewer-1")
    group, _ = Group.objects.get_or_create(name=roles.REVIEWER)
    user.groups.add(group)
    return User.objects.get(pk=user.pk)


def rule(kind: str) -> FlagRule:
    return FlagRule.objects.get(kind=kind, name__in=[r.name for r in rules()])
