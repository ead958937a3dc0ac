"""Reads for training exports and the reward model: the reviewed and rated turns they are made of."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Exists, OuterRef, Q, QuerySet, Sum

from chatbot.accounts.visibility import AnyUser, CollectionGate
from chatbot.models import Citation, Export, Feedback, Review, RewardModel, Turn

PAGE_SIZE = 25


def exports_page(*, page: str | None) -> Page[Export]:
    exports = Export.objects.select_related("created_by").order_by("-created_at", "-pk")
    return Paginator(exports, PAGE_SIZE).get_page(page)


def export_get(*, pk: int) -> Export:
    return Export.objects.select_related("created_by").get(pk=pk)


def _in_range(params: dict[str, Any], prefix: str = "turn__") -> Q:
    """Turns asked on or between the export's dates (inclusive, UTC); open ends when blank."""
    q = Q()
    if params.get("date_from"):
        q &= Q(**{f"{prefix}created_at__date__gte": date.fromisoformat(params["date_from"])})
    if params.get("date_to"):
        q &= Q(**{f"{prefix}created_at__date__lte": date.fromisoformat(params["date_to"])})
    return q


def _reviews(params: dict[str, Any]) -> QuerySet[Review]:
    return Review.objects.filter(
        _in_range(params), turn__status=Turn.Status.DONE, turn__is_replay=False
    ).exclude(turn__answer="")


def sft_review_ids(*, params: dict[str, Any]) -> list[int]:
    """Reviews that make a fine-tuning example: a corrected answer, or the answer approved.
    An approval does not count when another reviewer corrected the same answer: one of them
    found it wanting, and the correction is the example to learn from."""
    corrected = Review.objects.filter(turn=OuterRef("turn")).exclude(corrected_answer="")
    reviews = _reviews(params).filter(
        ~Q(corrected_answer="") | (Q(approved=True) & ~Exists(corrected))
    )
    return list(reviews.order_by("turn__created_at", "pk").values_list("pk", flat=True))


def reviews_with_turns(*, ids: Iterable[int]) -> list[Review]:
    wanted = list(ids)
    by_id = {
        r.pk: r
        for r in Review.objects.filter(pk__in=wanted).select_related("turn", "turn__endpoint")
    }
    return [by_id[pk] for pk in wanted if pk in by_id]


@dataclass(frozen=True)
class ContextBlock:
    number: int
    label: str
    text: str
    collection_id: int


def turn_contexts(*, turn_ids: Iterable[int]) -> dict[int, list[ContextBlock]]:
    """The numbered chunks each turn was given, as the model saw them."""
    contexts: dict[int, list[ContextBlock]] = defaultdict(list)
    rows = (
        Citation.objects.filter(turn_id__in=list(turn_ids))
        .order_by("turn_id", "number")
        .values_list(
            "turn_id", "number", "chunk__text", "chunk__heading", "chunk__document__title",
            "chunk__document__external_id", "chunk__collection_id",
        )
    )  # fmt: skip
    for turn_id, number, text, heading, title, external_id, collection_id in rows:
        label = title or external_id
        if heading and heading != title:
            label = f"{label} — {heading}"
        contexts[turn_id].append(
            ContextBlock(number=number, label=label, text=text, collection_id=collection_id)
        )
    return contexts


def export_readable(*, export: Export, user: AnyUser) -> bool:
    """Whether `user` may read every passage the export's file holds (the collections its rows
    cite, recorded when it was written)."""
    gate = CollectionGate(user)
    return all(gate.allows(pk) for pk in export.params.get("collections") or [])


def corrections(*, params: dict[str, Any]) -> list[Review]:
    reviews = _reviews(params).exclude(corrected_answer="").select_related("turn")
    return list(reviews.order_by("turn__created_at", "pk"))


@dataclass(frozen=True)
class RatedTurn:
    turn_id: int
    question: str
    answer: str
    # The sum of the thumbs: above 0 liked, below 0 disliked.
    net: int


def rated_turns(*, params: dict[str, Any] | None = None) -> list[RatedTurn]:
    """Finished turns with an answer and a net thumbs up or down."""
    rows = (
        Feedback.objects.filter(
            _in_range(params or {}), turn__status=Turn.Status.DONE, turn__is_replay=False
        )
        .exclude(turn__answer="")
        .values("turn_id", "turn__user_text", "turn__answer")
        .annotate(net=Sum("rating"))
        .exclude(net=0)
        .order_by("turn_id")
    )
    return [
        RatedTurn(
            turn_id=r["turn_id"], question=r["turn__user_text"], answer=r["turn__answer"],
            net=int(r["net"]),
        )
        for r in rows
    ]  # fmt: skip


@dataclass(frozen=True)
class GradedTurn:
    turn_id: int
    question: str
    answer: str
    # Per review: the mean of its five rubric grades, and its corrected answer (may be blank).
    rubric_means: tuple[float, ...] = ()
    corrections: tuple[str, ...] = ()
    net_thumbs: int = 0


def graded_turns(*, limit: int) -> list[GradedTurn]:
    """The most recent finished turns with an answer that a reviewer graded or a person rated."""
    turns = list(
        Turn.objects.filter(status=Turn.Status.DONE, is_replay=False)
        .exclude(answer="")
        .filter(
            Exists(Review.objects.filter(turn=OuterRef("pk")))
            | Exists(Feedback.objects.filter(turn=OuterRef("pk")))
        )
        .order_by("-created_at", "-pk")
        .values_list("pk", "user_text", "answer")[:limit]
    )
    ids = [pk for pk, _, _ in turns]
    reviews: dict[int, list[Review]] = defaultdict(list)
    for review in Review.objects.filter(turn_id__in=ids).only(
        "turn_id", *Review.RUBRIC, "corrected_answer"
    ):
        reviews[review.turn_id].append(review)
    thumbs = dict(
        Feedback.objects.filter(turn_id__in=ids)
        .values("turn_id")
        .annotate(net=Sum("rating"))
        .values_list("turn_id", "net")
    )
    return [
        GradedTurn(
            turn_id=pk,
            question=question,
            answer=answer,
            rubric_means=tuple(
                sum(r.grades.values()) / len(Review.RUBRIC) for r in reviews.get(pk, [])
            ),
            corrections=tuple(
                r.corrected_answer for r in reviews.get(pk, []) if r.corrected_answer.strip()
            ),
            net_thumbs=int(thumbs.get(pk) or 0),
        )
        for pk, question, answer in turns
    ]


def reward_models() -> QuerySet[RewardModel]:
    return RewardModel.objects.select_related("created_by").defer("artifact").order_by("-version")


def reward_model_active_version() -> int | None:
    return RewardModel.objects.filter(active=True).values_list("version", flat=True).first()


def reward_model_artifact(*, version: int) -> bytes | None:
    raw = RewardModel.objects.filter(version=version).values_list("artifact", flat=True).first()
    return None if raw is None else bytes(raw)
