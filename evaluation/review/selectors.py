"""Reads for the review queue and the item page."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import (
    Count,
    F,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    prefetch_related_objects,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from chatbot.accounts.visibility import HIDDEN_PASSAGE, CollectionGate
from chatbot.compliance.pii import redactor
from chatbot.models import (
    Citation,
    FlagRule,
    JudgeScore,
    Review,
    ReviewAssignment,
    ReviewItem,
    Span,
    Turn,
)

AnyUser = AbstractBaseUser | AnonymousUser
Status = ReviewAssignment.Status
EARLIER_TURNS_SHOWN = 10


def holding_q() -> Q:
    """Assignments that take one of an item's review slots: submitted, or held and not expired.
    Expired holds count as released, so abandoned work returns to the queue by itself."""
    return Q(status=Status.SUBMITTED) | Q(status=Status.ACTIVE, expires_at__gt=timezone.now())


def _assignment_count(condition: Q) -> Coalesce:
    counted = (
        ReviewAssignment.objects.filter(condition, item=OuterRef("pk"))
        .order_by()
        .values("item")
        .annotate(n=Count("pk"))
        .values("n")[:1]
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def assignment_current(*, reviewer: AnyUser) -> ReviewAssignment | None:
    """The reviewer's unexpired hold on an open item, if any (one at a time)."""
    return (
        ReviewAssignment.objects.filter(
            reviewer_id=reviewer.pk,
            status=Status.ACTIVE,
            expires_at__gt=timezone.now(),
            item__status=ReviewItem.Status.OPEN,
        )
        .select_related("item")
        .order_by("created_at")
        .first()
    )


def items_claimable(*, reviewer: AnyUser) -> QuerySet[ReviewItem]:
    """Open items with a free review slot that this reviewer has never held, best first."""
    return (
        ReviewItem.objects.filter(status=ReviewItem.Status.OPEN)
        .exclude(assignments__reviewer_id=reviewer.pk)
        .annotate(holding=_assignment_count(holding_q()))
        .filter(holding__lt=F("reviews_needed"))
        .order_by("-priority", "created_at", "pk")
    )


QUEUE_SORTS = {
    "priority": ("-priority", "created_at", "pk"),
    "oldest": ("created_at", "pk"),
    "newest": ("-created_at", "-pk"),
}
QUEUE_STATUSES = ("open", "done", "all")


@dataclass(frozen=True)
class QueueFilters:
    status: str = "open"
    kind: str = ""
    sort: str = "priority"

    @classmethod
    def from_query(cls, query: Any) -> QueueFilters:
        """Unknown values fall back to the defaults rather than failing: these come from links."""
        status = query.get("status", "open")
        kind = query.get("kind", "")
        sort = query.get("sort", "priority")
        return cls(
            status=status if status in QUEUE_STATUSES else "open",
            kind=kind if kind in FlagRule.Kind.values else "",
            sort=sort if sort in QUEUE_SORTS else "priority",
        )


def queue_items(filters: QueueFilters) -> QuerySet[ReviewItem]:
    queryset = ReviewItem.objects.select_related("turn").annotate(
        submitted=_assignment_count(Q(status=Status.SUBMITTED)),
        in_progress=_assignment_count(Q(status=Status.ACTIVE, expires_at__gt=timezone.now())),
    )
    if filters.status != "all":
        queryset = queryset.filter(status=filters.status)
    if filters.kind:
        queryset = queryset.filter(reasons__contains=[{"kind": filters.kind}])
    return queryset.order_by(*QUEUE_SORTS[filters.sort])


def queue_counts() -> dict[str, int]:
    return ReviewItem.objects.aggregate(
        open=Count("pk", filter=Q(status=ReviewItem.Status.OPEN)),
        done=Count("pk", filter=Q(status=ReviewItem.Status.DONE)),
    )


def item_get(pk: int) -> ReviewItem:
    return ReviewItem.objects.select_related(
        "turn__conversation__owner", "turn__endpoint", "turn__escalation__requested_by", "rule"
    ).get(pk=pk)


def assignment_for(*, item: ReviewItem, reviewer: AnyUser) -> ReviewAssignment | None:
    return ReviewAssignment.objects.filter(item=item, reviewer_id=reviewer.pk).first()


def _shown_citations(
    turn: Turn, gate: CollectionGate, redact: Callable[[str], str]
) -> list[Citation]:
    """The turn's citations as the reviewer may read them: `shown_text` is the passage (personal
    data redacted as the policy says), or nothing with `hidden` set when its collection is not
    shared with them."""
    citations = list(turn.citations.all())
    for citation in citations:
        document = citation.chunk.document
        citation.hidden = not gate.allows(citation.chunk.collection_id)  # type: ignore[attr-defined]
        if citation.hidden:  # type: ignore[attr-defined]
            # The answer's citation links carry the document's title: it is the collection's too.
            document.title = document.external_id = HIDDEN_PASSAGE
            citation.shown_text = ""  # type: ignore[attr-defined]
        else:
            citation.shown_text = redact(citation.chunk.text)  # type: ignore[attr-defined]
    return citations


def item_context(*, item: ReviewItem, reviewer: AnyUser) -> dict[str, Any]:
    """Everything the item page shows about the turn, as `reviewer` may see it (personal data as
    the policy says, passages of collections shared with them), in a fixed number of queries."""
    redact = redactor(reviewer)  # type: ignore[arg-type]
    gate = CollectionGate(reviewer)  # type: ignore[arg-type]
    # A copy for display: the question and answer shown are redacted, the row is not touched.
    turn = copy.copy(item.turn)
    turn.user_text, turn.answer = redact(turn.user_text), redact(turn.answer)
    earlier = list(
        Turn.objects.filter(conversation_id=turn.conversation_id, created_at__lt=turn.created_at)
        .order_by("-created_at", "-pk")
        .only("pk", "user_text", "answer", "status", "created_at")[:EARLIER_TURNS_SHOWN]
    )
    earlier.reverse()
    for exchange in earlier:
        exchange.user_text, exchange.answer = redact(exchange.user_text), redact(exchange.answer)
    # The answer's markdown filter reads turn.citations too: load them once for both.
    prefetch_related_objects(
        [turn],
        Prefetch(
            "citations",
            queryset=Citation.objects.select_related("chunk__document").order_by("number"),
        ),
    )
    citations = _shown_citations(turn, gate, redact)
    feedback = list(turn.feedback.select_related("user").order_by("created_at"))
    for entry in feedback:
        entry.comment = redact(entry.comment)
    escalation = turn.escalation_or_none
    if escalation is not None:
        escalation.reason = redact(escalation.reason)
    assignment = assignment_for(item=item, reviewer=reviewer)
    reviews = list(
        Review.objects.filter(item=item).select_related("reviewer").order_by("created_at")
    )
    # While an item is open, a second reviewer must not see the first one's grades.
    show_reviews = item.status == ReviewItem.Status.DONE or (
        assignment is not None and assignment.status == Status.SUBMITTED
    )
    return {
        "turn": turn,
        "earlier_turns": earlier,
        "citations": citations,
        "scores": list(
            JudgeScore.objects.filter(turn=turn).select_related("judge").order_by("judge__name")
        ),
        "feedback": feedback,
        "escalation": escalation,
        "spans": list(Span.objects.filter(turn=turn).order_by("started_at")),
        "assignment": assignment,
        "reviews": reviews if show_reviews else [],
        "reviews_hidden": 0 if show_reviews else len(reviews),
        "hidden_passage": HIDDEN_PASSAGE,
    }


def rules_all() -> QuerySet[FlagRule]:
    return FlagRule.objects.annotate(
        open_items=Count("items", filter=Q(items__status=ReviewItem.Status.OPEN))
    ).order_by("-priority", "name")
