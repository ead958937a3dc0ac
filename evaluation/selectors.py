"""Reads for judges and their scores."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from chatbot.models import Citation, Judge, JudgeScore, Span, Turn
from evaluation.judges import JudgeCase


def judges_active() -> QuerySet[Judge]:
    """The judge versions that run on new turns."""
    return Judge.objects.filter(enabled=True).order_by("name", "-version")


def judge_case(*, turn: Turn) -> JudgeCase:
    contexts = tuple(
        Citation.objects.filter(turn=turn).order_by("number").values_list("number", "chunk__text")
    )
    return JudgeCase(
        question=turn.user_text, answer=turn.answer, contexts=contexts, no_answer=turn.no_answer
    )


def turn_scores(*, turn: Turn) -> QuerySet[JudgeScore]:
    return JudgeScore.objects.filter(turn=turn).select_related("judge").order_by("judge__name")


def turns_unjudged(*, since: datetime, until: datetime, retry_failed: bool) -> QuerySet[Turn]:
    """Finished turns asked between the two times that some enabled judge version has not judged.

    A version that skipped the turn (its span says so) has judged it. With `retry_failed`, a
    failed score counts as not judged; without it, any score or span of the version counts as
    judged, so the periodic sweep never queues the same turn again and again.
    """
    missing = Q()
    for pk, name, version in judges_active().values_list("pk", "name", "version"):
        spans = Span.objects.filter(
            turn=OuterRef("pk"),
            kind=Span.Kind.JUDGE,
            attributes__judge=name,
            attributes__version=version,
        )
        scores = JudgeScore.objects.filter(turn=OuterRef("pk"), judge_id=pk)
        if retry_failed:
            scores = scores.filter(status=JudgeScore.Status.DONE)
            spans = spans.filter(attributes__has_key="skipped")
        missing |= ~Exists(scores) & ~Exists(spans)
    if not missing:
        return Turn.objects.none()
    return (
        Turn.objects.filter(status=Turn.Status.DONE, created_at__gte=since, created_at__lt=until)
        .filter(missing)
        .order_by("created_at", "pk")
    )


def turn_judges_verdict(*, turn_id: int) -> bool | None:
    """Whether the enabled judges passed the turn: True once each has passed it or skipped it
    (one passing at least), False as soon as one has failed it, None while one is still to
    judge it (or has only failed to run) or when none scored it. Three queries."""
    active = list(judges_active().values_list("pk", "name", "version"))
    scores = dict(
        JudgeScore.objects.filter(
            turn_id=turn_id, status=JudgeScore.Status.DONE, judge_id__in=[pk for pk, _, _ in active]
        ).values_list("judge_id", "passed")
    )
    if False in scores.values():
        return False
    skipped = {
        (attributes.get("judge"), attributes.get("version"))
        for attributes in Span.objects.filter(
            turn_id=turn_id, kind=Span.Kind.JUDGE, attributes__has_key="skipped"
        ).values_list("attributes", flat=True)
    }
    for pk, name, version in active:
        if pk not in scores and (name, version) not in skipped:
            return None
    return True if scores else None


def judges_with_stats(*, since: datetime) -> QuerySet[Judge]:
    """Every judge version with its scores since `since`: `done_count` (scored), `failed_count`
    and `passed_count`."""
    recent = Q(scores__created_at__gte=since)
    failed = Q(scores__status=JudgeScore.Status.FAILED)
    return (
        Judge.objects.select_related("endpoint")
        .annotate(
            done_count=Count("scores", filter=recent & Q(scores__status=JudgeScore.Status.DONE)),
            failed_count=Count("scores", filter=recent & failed),
            passed_count=Count("scores", filter=recent & Q(scores__passed=True)),
        )
        .order_by("name", "-version")
    )
