"""Removing turns with everything derived from them, used by the retention job and by erasure.

Deleting a turn cascades in the database to its spans, citations, feedback, judge scores, review
item and reviews, escalation, cached answer and replays. Two things do not cascade and are done
here: dataset items that came from the turn (their provenance keys are SET_NULL, so the copied
question and answer would survive), and rows of training-export files on disk."""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Q, QuerySet

from chatbot.models import (
    AnswerCacheEntry,
    Conversation,
    DatasetItem,
    Escalation,
    Export,
    Feedback,
    LegalHold,
    Review,
    Span,
    Turn,
)
from evaluation.exports.services import export_file

# The keys of an export row's metadata that name a turn or a review (evaluation.exports.services).
TURN_KEYS = ("turn_id", "chosen_turn_id", "rejected_turn_id")
REVIEW_KEYS = ("review_id",)

ANONYMOUS_OWNER = "anonymised"


def held_turns() -> Q:
    """The turns under an active legal hold: in a held conversation, or a held person's."""
    active = LegalHold.objects.filter(released_at__isnull=True)
    return Q(conversation__in=active.filter(conversation__isnull=False).values("conversation")) | Q(
        conversation__owner__in=active.filter(user__isnull=False).values("user")
    )


def held_conversations() -> Q:
    active = LegalHold.objects.filter(released_at__isnull=True)
    return Q(pk__in=active.filter(conversation__isnull=False).values("conversation")) | Q(
        owner__in=active.filter(user__isnull=False).values("user")
    )


def _row_names(metadata: Any, turn_ids: Collection[int], review_ids: Collection[int]) -> bool:
    if not isinstance(metadata, dict):
        return False
    return any(metadata.get(k) in turn_ids for k in TURN_KEYS) or any(
        metadata.get(k) in review_ids for k in REVIEW_KEYS
    )


def export_turn_ids(export: Export) -> set[int]:
    """The turns an export's file has rows of."""
    path = export_file(export)
    found: set[int] = set()
    if path is None:
        return found
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            metadata = json.loads(line).get("metadata") if line.strip() else None
            if isinstance(metadata, dict):
                found.update(v for k in TURN_KEYS if isinstance(v := metadata.get(k), int))
    return found


def exports_scrub(*, turn_ids: Collection[int], review_ids: Collection[int] = ()) -> int:
    """Rewrite every export file without its rows of these turns or reviews; returns how many
    rows went. The file is replaced in one rename, and the export records what was taken out
    (`params["rows_removed"]`) so its counts still add up."""
    turns, reviews = set(turn_ids), set(review_ids)
    removed_all = 0
    if not turns and not reviews:
        return 0
    for export in Export.objects.exclude(path="").order_by("pk"):
        path = export_file(export)
        if path is None:
            continue
        kept, removed = [], 0
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                if line.strip() and _row_names(json.loads(line).get("metadata"), turns, reviews):
                    removed += 1
                else:
                    kept.append(line)
        if not removed:
            continue
        partial = path.with_name(path.name + ".partial")
        partial.write_text("".join(kept), encoding="utf-8")
        os.replace(partial, path)
        export.rows_written = max(export.rows_written - removed, 0)
        export.params = {
            **export.params,
            "rows_removed": export.params.get("rows_removed", 0) + removed,
        }
        export.save(update_fields=["rows_written", "params"])
        removed_all += removed
    return removed_all


def _derived_items(turn_ids: Collection[int]) -> QuerySet[DatasetItem]:
    ids = list(turn_ids)
    return DatasetItem.objects.filter(
        Q(source_turn__in=ids) | Q(source_review__turn__in=ids) | Q(source_escalation__turn__in=ids)
    )


def turns_delete(*, turn_ids: Collection[int]) -> int:
    """Delete these turns and everything derived from them (call inside a transaction)."""
    ids = list(turn_ids)
    exports_scrub(
        turn_ids=ids,
        review_ids=list(Review.objects.filter(turn__in=ids).values_list("pk", flat=True)),
    )
    _derived_items(ids).delete()
    deleted, _ = Turn.objects.filter(pk__in=ids).delete()
    return len(ids) if deleted else 0


def anonymous_owner() -> User:
    """The inactive account anonymised conversations are moved to, away from their person."""
    user, created = User.objects.get_or_create(
        username=ANONYMOUS_OWNER, defaults={"is_active": False}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def turns_anonymise(*, turn_ids: Collection[int], whole_conversations_before: Any = None) -> int:
    """Blank the text of these turns and of what hangs off them, keeping every number (tokens,
    cost, latency, status, endpoint, dates): the dashboard's figures stay as they were. What is
    only text (cached answers, dataset items, export rows) is deleted. A conversation whose
    every turn is older than `whole_conversations_before` loses its title and its owner too."""
    ids = list(turn_ids)
    exports_scrub(
        turn_ids=ids,
        review_ids=list(Review.objects.filter(turn__in=ids).values_list("pk", flat=True)),
    )
    _derived_items(ids).delete()
    AnswerCacheEntry.objects.filter(source_turn__in=ids).delete()
    Span.objects.filter(turn__in=ids).update(attributes={}, error="")
    Feedback.objects.filter(turn__in=ids).update(comment="")
    Review.objects.filter(turn__in=ids).update(comment="", corrected_answer="")
    Escalation.objects.filter(turn__in=ids).update(reason="", answer="")
    changed = Turn.objects.filter(pk__in=ids).update(user_text="", answer="", error="")
    if whole_conversations_before is not None:
        conversations = Conversation.objects.filter(turns__in=ids).exclude(
            turns__created_at__gte=whole_conversations_before
        )
        Conversation.objects.filter(pk__in=conversations.values("pk")).update(
            title="", owner=anonymous_owner()
        )
    return changed
