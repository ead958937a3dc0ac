"""Reads for synthetic questions. A reviewer sees only the runs and candidates of collections
shared with them (admins see every collection), decided by `collections_visible_to`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Count, Q, QuerySet

from chatbot.accounts.visibility import collections_visible_to, sees_every_collection
from chatbot.models import SyntheticCandidate, SyntheticRun

AnyUser = User | AnonymousUser
STATUSES = ("pending", "accepted", "rejected", "all")


def _visible(queryset: QuerySet[Any], user: AnyUser, field: str = "collection") -> QuerySet[Any]:
    if sees_every_collection(user):
        return queryset
    return queryset.filter(**{f"{field}__in": collections_visible_to(user).values("pk")})


@dataclass(frozen=True)
class CandidateFilters:
    status: str = "pending"
    kind: str = ""
    run: int | None = None

    @classmethod
    def from_query(cls, query: Any) -> CandidateFilters:
        """Unknown values fall back to the defaults rather than failing: these come from links."""
        status = query.get("status", "pending")
        kind = query.get("kind", "")
        run = query.get("run", "")
        return cls(
            status=status if status in STATUSES else "pending",
            kind=kind if kind in SyntheticCandidate.Kind.values else "",
            run=int(run) if run.isdigit() else None,
        )

    def query(self) -> dict[str, str]:
        shared = {"status": self.status, "kind": self.kind, "run": str(self.run or "")}
        return {k: v for k, v in shared.items() if v}


def candidates_for(user: AnyUser, filters: CandidateFilters) -> QuerySet[SyntheticCandidate]:
    candidates = SyntheticCandidate.objects.select_related(
        "run", "document", "dataset", "reviewed_by"
    )
    candidates = _visible(candidates, user)
    if filters.status != "all":
        candidates = candidates.filter(status=filters.status)
    if filters.kind:
        candidates = candidates.filter(kind=filters.kind)
    if filters.run is not None:
        candidates = candidates.filter(run_id=filters.run)
    return candidates.order_by("created_at", "pk")


def candidate_get_for(user: AnyUser, pk: int) -> SyntheticCandidate:
    """A candidate of a collection shared with `user`; anyone else's is DoesNotExist (a 404),
    so ids reveal nothing."""
    return _visible(
        SyntheticCandidate.objects.select_related(
            "run__created_by",
            "chunk",
            "document",
            "collection",
            "dataset",
            "dataset_item",
            "reviewed_by",
        ),
        user,
    ).get(pk=pk)


def candidate_next_for(user: AnyUser, *, after: SyntheticCandidate | None = None) -> int | None:
    """The next pending candidate the user may review (after `after` in queue order)."""
    pending = _visible(
        SyntheticCandidate.objects.filter(status=SyntheticCandidate.Status.PENDING), user
    )
    if after is not None:
        pending = pending.exclude(pk=after.pk)
        later = pending.filter(
            Q(created_at__gt=after.created_at) | Q(created_at=after.created_at, pk__gt=after.pk)
        )
        found = later.order_by("created_at", "pk").values_list("pk", flat=True).first()
        if found is not None:
            return found
    return pending.order_by("created_at", "pk").values_list("pk", flat=True).first()


def pending_count_for(user: AnyUser) -> int:
    return _visible(
        SyntheticCandidate.objects.filter(status=SyntheticCandidate.Status.PENDING), user
    ).count()


def candidate_counts_for(user: AnyUser) -> dict[str, int]:
    return _visible(SyntheticCandidate.objects.all(), user).aggregate(
        pending=Count("pk", filter=Q(status=SyntheticCandidate.Status.PENDING)),
        accepted=Count("pk", filter=Q(status=SyntheticCandidate.Status.ACCEPTED)),
        rejected=Count("pk", filter=Q(status=SyntheticCandidate.Status.REJECTED)),
    )


def runs_for(user: AnyUser) -> QuerySet[SyntheticRun]:
    runs = SyntheticRun.objects.select_related("dataset", "collection", "created_by").annotate(
        pending=Count("candidates", filter=Q(candidates__status="pending")),
        accepted=Count("candidates", filter=Q(candidates__status="accepted")),
    )
    return _visible(runs, user).order_by("-created_at", "-pk")


def run_get_for(user: AnyUser, pk: int) -> SyntheticRun:
    runs = SyntheticRun.objects.select_related("dataset", "collection", "endpoint", "created_by")
    return _visible(runs, user).get(pk=pk)


def run_counts(run: SyntheticRun) -> dict[str, int]:
    """How many of the run's candidates wait, were accepted and were rejected."""
    return SyntheticCandidate.objects.filter(run=run).aggregate(
        pending=Count("pk", filter=Q(status=SyntheticCandidate.Status.PENDING)),
        accepted=Count("pk", filter=Q(status=SyntheticCandidate.Status.ACCEPTED)),
        rejected=Count("pk", filter=Q(status=SyntheticCandidate.Status.REJECTED)),
    )
