"""Reads for the trace and turn-search pages."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Exists, Min, OuterRef, Prefetch, Q, QuerySet

from chatbot.models import (
    Citation,
    Feedback,
    JudgeScore,
    Replay,
    Review,
    ReviewItem,
    Span,
    Turn,
)


def turn_for_trace(turn_id: int) -> Turn:
    """The turn with everything its trace page shows, loaded in a fixed number of queries."""
    return (
        Turn.objects.select_related(
            "conversation__owner",
            "endpoint",
            "escalation__claimed_by",
            "escalation__answered_by",
            "review",
            "replay_of",
        )
        .prefetch_related(
            Prefetch("spans", queryset=Span.objects.order_by("started_at")),
            Prefetch(
                "judge_scores",
                queryset=JudgeScore.objects.select_related("judge").order_by("judge__name"),
            ),
            Prefetch("feedback", queryset=Feedback.objects.select_related("user")),
            Prefetch(
                "citations",
                queryset=Citation.objects.select_related("chunk__document").order_by("number"),
            ),
            Prefetch("reviews", queryset=Review.objects.select_related("reviewer")),
            Prefetch("replays", queryset=Turn.objects.order_by("-created_at")),
        )
        .get(pk=turn_id)
    )


def replays_of(turn: Turn) -> QuerySet[Replay]:
    return Replay.objects.filter(
        Q(source_turn=turn) | Q(source_conversation_id=turn.conversation_id)
    ).select_related("endpoint", "created_by")


def turns_search(criteria: dict[str, Any]) -> QuerySet[Turn]:
    """Turns matching the search page's cleaned criteria, newest first, with what a row shows."""
    turns = Turn.objects.select_related("conversation__owner", "endpoint")
    replays = criteria.get("replays") or ""
    if replays == "only":
        turns = turns.filter(is_replay=True)
    elif replays != "include":
        turns = turns.filter(is_replay=False)
    if criteria.get("user"):
        turns = turns.filter(conversation__owner__username=criteria["user"])
    if criteria.get("model"):
        turns = turns.filter(endpoint=criteria["model"])
    if criteria.get("route"):
        turns = turns.filter(route_reason__icontains=criteria["route"])
    if criteria.get("collection"):
        turns = turns.filter(
            Exists(
                Citation.objects.filter(
                    turn=OuterRef("pk"), chunk__collection=criteria["collection"]
                )
            )
        )
    if criteria.get("start"):
        turns = turns.filter(created_at__date__gte=criteria["start"])
    if criteria.get("end"):
        turns = turns.filter(created_at__date__lte=criteria["end"])
    if criteria.get("status"):
        turns = turns.filter(status=criteria["status"])
    if criteria.get("judge_below") is not None:
        turns = turns.filter(
            Exists(
                JudgeScore.objects.filter(turn=OuterRef("pk"), score__lt=criteria["judge_below"])
            )
        )
    flagged = Exists(ReviewItem.objects.filter(turn=OuterRef("pk")))
    if criteria.get("flagged") == "yes":
        turns = turns.filter(flagged)
    elif criteria.get("flagged") == "no":
        turns = turns.exclude(flagged)
    feedback = criteria.get("feedback")
    if feedback in {"up", "down"}:
        rating = Feedback.Rating.UP if feedback == "up" else Feedback.Rating.DOWN
        turns = turns.filter(Exists(Feedback.objects.filter(turn=OuterRef("pk"), rating=rating)))
    elif feedback == "none":
        turns = turns.exclude(Exists(Feedback.objects.filter(turn=OuterRef("pk"))))
    return turns.order_by("-created_at", "-pk")


def turns_page_details(turns: list[Turn]) -> list[Turn]:
    """Adds what a result row shows (lowest judge score, thumbs, review flag) to one page."""
    ids = [t.pk for t in turns]
    scores = dict(
        JudgeScore.objects.filter(turn_id__in=ids, status=JudgeScore.Status.DONE)
        .values("turn_id")
        .annotate(low=Min("score"))
        .values_list("turn_id", "low")
    )
    thumbs: dict[int, dict[int, int]] = {}
    for row in (
        Feedback.objects.filter(turn_id__in=ids)
        .values("turn_id", "rating")
        .annotate(n=Count("pk"))
        .order_by()
    ):
        thumbs.setdefault(row["turn_id"], {})[row["rating"]] = row["n"]
    flagged = set(ReviewItem.objects.filter(turn_id__in=ids).values_list("turn_id", flat=True))
    for turn in turns:
        turn.lowest_score = scores.get(turn.pk)  # type: ignore[attr-defined]
        turn.thumbs_up = thumbs.get(turn.pk, {}).get(1, 0)  # type: ignore[attr-defined]
        turn.thumbs_down = thumbs.get(turn.pk, {}).get(-1, 0)  # type: ignore[attr-defined]
        turn.flagged = turn.pk in flagged  # type: ignore[attr-defined]
    return turns
