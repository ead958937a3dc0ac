"""Reads for the escalation inbox: the list with its filters and counts, and one escalation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db.models import QuerySet

from chatbot.models import Escalation

Status = Escalation.Status
# What the inbox can show: what still needs a human (the default), one's own claimed ones,
# resolved ones, or everything.
VIEWS = (
    ("waiting", "Waiting"),
    ("mine", "Claimed by me"),
    ("resolved", "Resolved"),
    ("all", "All"),
)


@dataclass(frozen=True)
class InboxFilters:
    show: str = "waiting"

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> InboxFilters:
        show = query.get("show", "waiting")
        return cls(show=show if show in dict(VIEWS) else "waiting")


def inbox(filters: InboxFilters, *, user: User) -> QuerySet[Escalation]:
    rows = Escalation.objects.select_related(
        "turn__conversation__owner", "requested_by", "claimed_by", "answered_by", "resolved_by"
    )
    if filters.show == "waiting":
        # Oldest first: whoever has waited longest is helped first.
        return rows.exclude(status=Status.RESOLVED).order_by("created_at", "pk")
    if filters.show == "mine":
        return rows.filter(claimed_by=user).exclude(status=Status.RESOLVED).order_by("created_at")
    if filters.show == "resolved":
        return rows.filter(status=Status.RESOLVED).order_by("-resolved_at", "-pk")
    return rows.order_by("-created_at", "-pk")


def escalation_get(pk: int) -> Escalation:
    return Escalation.objects.select_related(
        "turn__conversation__owner",
        "turn__endpoint",
        "requested_by",
        "claimed_by",
        "answered_by",
        "resolved_by",
    ).get(pk=pk)
