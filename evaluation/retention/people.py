"""One person's data: everything about them as a JSON archive, and its erasure on request.

Erasure deletes their conversations with everything derived from them (the retention job's
`turns_delete`: spans, citations, feedback, judge scores, reviews, escalations, cached answers,
dataset items and export rows on disk), what they wrote on other people's turns (feedback,
reviews, escalation requests), their keys, assignments and extraction runs, then anonymises the
account: `erased-<id>`, no name or email, no password, no groups, inactive. The account row
stays so that the rollups' per-person day counts (UserDay, numbers only) and the audit log's
actor ids keep meaning something; the audit log itself is never rewritten (append-only).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

from django.apps import apps
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from chatbot.models import (
    ABAssignment,
    ApiKey,
    Conversation,
    DatasetItem,
    Escalation,
    ExtractionRun,
    Feedback,
    Review,
    ReviewAssignment,
    Turn,
)
from chatbot.telemetry.audit import audit_record
from evaluation.retention.archive import row
from evaluation.retention.derived import exports_scrub, turns_delete
from evaluation.retention.services import turn_record, user_held

ERASED_PREFIX = "erased-"


class ErasureRefused(ValueError):
    """The person is under a legal hold, or the confirmation does not match."""


def person_data(*, user: User) -> dict[str, Any]:
    """Everything stored about the person. API keys by their metadata: the hashed secret is
    left out."""
    conversations = Conversation.objects.filter(owner=user).order_by("pk")
    turns = (
        Turn.objects.filter(conversation__owner=user)
        .select_related("conversation")
        .prefetch_related("spans", "citations", "feedback", "judge_scores", "reviews")
        .order_by("pk")
    )
    return {
        "exported_at": timezone.now().isoformat(),
        "account": {
            **row(user, leave_out=("password",)),
            "groups": sorted(user.groups.values_list("name", flat=True)),
        },
        "conversations": [row(c) for c in conversations],
        "turns": [turn_record(t) for t in turns],
        "feedback_given": [row(f) for f in Feedback.objects.filter(user=user).order_by("pk")],
        "reviews_written": [row(r) for r in Review.objects.filter(reviewer=user).order_by("pk")],
        "escalations_requested": [
            row(e) for e in Escalation.objects.filter(requested_by=user).order_by("pk")
        ],
        "review_assignments": [
            row(a) for a in ReviewAssignment.objects.filter(reviewer=user).order_by("pk")
        ],
        "ab_assignments": [row(a) for a in ABAssignment.objects.filter(user=user).order_by("pk")],
        "api_keys": [
            row(k, leave_out=("hashed_secret",))
            for k in ApiKey.objects.filter(user=user).order_by("pk")
        ],
        "extraction_runs": [
            row(r) for r in ExtractionRun.objects.filter(owner=user).order_by("pk")
        ],
    }


def person_export(*, user: User, by: User) -> Iterator[bytes]:
    """The person's data as gzip-compressed JSON, in pieces for a streamed download; audited."""
    data = person_data(user=user)
    audit_record(
        "person.export",
        target=user,
        details={"turns": len(data["turns"]), "conversations": len(data["conversations"])},
        actor=by,
    )
    payload = gzip.compress(json.dumps(data, ensure_ascii=False, default=str).encode("utf-8"))
    for start in range(0, len(payload), 64 * 1024):
        yield payload[start : start + 64 * 1024]


# Kept on purpose: a day's turn count per person (numbers the dashboard's figures rest on) and
# released legal holds (a record of the hold itself). Both point at the anonymised account.
KEPT_POINTERS = {("chatbot.UserDay", "user"), ("chatbot.LegalHold", "user")}


def _pointers_clear(user: User) -> None:
    """Every other column of the data model that still points at the person: a nullable one
    (who created a dataset, who claimed an escalation, ...) is emptied, a required one's rows go.
    Generic on purpose, so a table added later is covered without a change here."""
    for model in apps.get_app_config("chatbot").get_models():
        for field in model._meta.concrete_fields:
            if not field.is_relation or field.related_model is not User:
                continue
            if (model._meta.label, field.name) in KEPT_POINTERS:
                continue
            rows = model._default_manager.filter(**{field.name: user})
            if field.null:
                rows.update(**{field.name: None})
            else:
                rows.delete()


def person_erase(*, user: User, confirm: str, by: User) -> dict[str, int]:
    """Erase the person's data; `confirm` must repeat their username. Refused while a legal hold
    covers them or a conversation of theirs. Returns what went, per kind."""
    if confirm.strip() != user.username:
        raise ErasureRefused("Type the person's username exactly to confirm.")
    if user.username.startswith(ERASED_PREFIX):
        raise ErasureRefused("This person's data was already erased.")
    if user_held(user):
        raise ErasureRefused(
            "A legal hold covers this person or one of their conversations: release it first."
        )
    if user == by:
        raise ErasureRefused("You cannot erase your own account.")
    counts: dict[str, int] = {}
    with transaction.atomic():
        turn_ids = list(Turn.objects.filter(conversation__owner=user).values_list("pk", flat=True))
        counts["turns"] = turns_delete(turn_ids=turn_ids) if turn_ids else 0
        counts["conversations"], _ = Conversation.objects.filter(owner=user).delete()
        # What they wrote on other people's turns.
        reviews = list(Review.objects.filter(reviewer=user).values_list("pk", flat=True))
        exports_scrub(turn_ids=(), review_ids=reviews)
        DatasetItem.objects.filter(source_review__in=reviews).delete()
        DatasetItem.objects.filter(source_escalation__requested_by=user).delete()
        counts["reviews"], _ = Review.objects.filter(pk__in=reviews).delete()
        counts["feedback"], _ = Feedback.objects.filter(user=user).delete()
        counts["escalations"], _ = Escalation.objects.filter(requested_by=user).delete()
        counts["review_assignments"], _ = ReviewAssignment.objects.filter(reviewer=user).delete()
        counts["ab_assignments"], _ = ABAssignment.objects.filter(user=user).delete()
        counts["api_keys"], _ = ApiKey.objects.filter(user=user).delete()
        counts["extraction_runs"], _ = ExtractionRun.objects.filter(owner=user).delete()
        _pointers_clear(user)
        user.username = f"{ERASED_PREFIX}{user.pk}"
        user.first_name = user.last_name = user.email = ""
        user.is_active = user.is_staff = user.is_superuser = False
        user.set_unusable_password()
        user.save()
        user.groups.clear()
        user.user_permissions.clear()
        # The entry names the person by id only: their username is what was erased.
        audit_record("person.erase", target=user, details={"counts": counts}, actor=by)
    return counts
