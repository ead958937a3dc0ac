"""Retention policies, legal holds and the retention job.

The job goes kind by kind. For each policy with a duration it takes what is older than that,
leaves out what a legal hold covers, and removes it in batches of RETENTION_BATCH_SIZE, one
transaction per batch (a pass cut short keeps what it finished; the next one carries on). Running
it twice removes nothing more the second time. Audit entries are never touched: the audit log is
append-only by design (a Postgres trigger refuses deletes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from chatbot.models import (
    AnswerCacheEntry,
    Conversation,
    DatasetItem,
    Export,
    ExtractionRun,
    JudgeScore,
    LegalHold,
    RetentionPolicy,
    RetentionRun,
    Review,
    Span,
    Turn,
)
from chatbot.telemetry.audit import audit_record
from evaluation.exports.services import export_file
from evaluation.retention.archive import ArchiveWriter, row
from evaluation.retention.derived import (
    export_turn_ids,
    held_conversations,
    held_turns,
    turns_anonymise,
    turns_delete,
)

logger = logging.getLogger(__name__)

Kind = RetentionPolicy.Kind
Action = RetentionPolicy.Action


# --- policies and holds ------------------------------------------------------------------------


def policies_ensure() -> list[RetentionPolicy]:
    """Every kind's policy, creating the missing ones keeping forever (the migration made them;
    a test database emptied by a transactional test may lack them)."""
    for kind in Kind.values:
        RetentionPolicy.objects.get_or_create(kind=kind, defaults={"keep_days": None})
    return list(RetentionPolicy.objects.order_by("kind"))


def policy_update(
    *, policy: RetentionPolicy, keep_days: int | None, action: str, user: User | None
) -> RetentionPolicy:
    """Change a policy; the shortest keeping is RETENTION_MIN_KEEP_DAYS (see settings)."""
    if keep_days is not None and keep_days < settings.RETENTION_MIN_KEEP_DAYS:
        raise ValidationError(
            f"Keep for at least {settings.RETENTION_MIN_KEEP_DAYS} days: the dashboard recomputes "
            "the last week from the raw tables."
        )
    if action not in Action.values:
        raise ValidationError(f"{action!r} is not a retention action.")
    before = {"keep_days": policy.keep_days, "action": policy.action}
    policy.keep_days, policy.action, policy.updated_by = keep_days, action, user
    policy.save(update_fields=["keep_days", "action", "updated_by", "updated_at"])
    audit_record(
        "retention.policy",
        target=policy,
        details={"before": before, "after": {"keep_days": keep_days, "action": action}},
        actor=user,
    )
    return policy


def hold_set(
    *, user: User | None = None, conversation: Conversation | None = None, reason: str, by: User
) -> LegalHold:
    if (user is None) == (conversation is None):
        raise ValidationError("A legal hold is on one person or one conversation.")
    if not reason.strip():
        raise ValidationError("Say why the data is held.")
    hold = LegalHold.objects.create(
        user=user, conversation=conversation, reason=reason.strip(), created_by=by
    )
    audit_record("legal_hold.set", target=hold, details={"reason": hold.reason}, actor=by)
    return hold


def hold_release(*, hold: LegalHold, by: User) -> LegalHold:
    if hold.released_at is None:
        hold.released_at, hold.released_by = timezone.now(), by
        hold.save(update_fields=["released_at", "released_by"])
        audit_record("legal_hold.release", target=hold, actor=by)
    return hold


def user_held(user: User) -> bool:
    """Whether the person, or any conversation of theirs, is under an active legal hold."""
    return (
        LegalHold.objects.filter(released_at__isnull=True)
        .filter(Q(user=user) | Q(conversation__owner=user))
        .exists()
    )


# --- the job -----------------------------------------------------------------------------------


def turn_record(turn: Turn) -> dict[str, Any]:
    """A turn with the rows that hang off it, as archived and as exported for a person."""
    escalation = turn.escalation_or_none
    review_item = getattr(turn, "review", None)  # the missing one-to-one raises AttributeError
    return {
        "kind": "turn",
        "turn_id": turn.pk,
        **row(turn),
        "conversation": row(turn.conversation),
        "spans": [row(s) for s in turn.spans.all()],
        "citations": [row(c) for c in turn.citations.all()],
        "feedback": [row(f) for f in turn.feedback.all()],
        "judge_scores": [row(j) for j in turn.judge_scores.all()],
        "review_item": row(review_item) if review_item else None,
        "reviews": [row(r) for r in turn.reviews.all()],
        "escalation": row(escalation) if escalation else None,
    }


@dataclass(frozen=True)
class KindRule:
    """How one kind is found and removed."""

    queryset: Callable[[datetime], QuerySet[Any]]
    # Anonymise: keep the row, blank its text. None: the kind is only text, so it is deleted.
    blank: dict[str, Any] | None = None
    # Archive each row as (None: `row(obj)`).
    record: Callable[[Any], dict[str, Any]] | None = None


def _turns(cutoff: datetime) -> QuerySet[Turn]:
    return Turn.objects.filter(created_at__lt=cutoff).exclude(held_turns())


def _under_turn(model: type[models.Model], field: str) -> Callable[[datetime], QuerySet[Any]]:
    def queryset(cutoff: datetime) -> QuerySet[Any]:
        held = Turn.objects.filter(held_turns()).values("pk")
        return model._default_manager.filter(**{f"{field}__lt": cutoff}).exclude(turn__in=held)

    return queryset


def _dataset_items(cutoff: datetime) -> QuerySet[DatasetItem]:
    held = Turn.objects.filter(held_turns()).values("pk")
    return (
        DatasetItem.objects.filter(created_at__lt=cutoff)
        .filter(
            Q(source_turn__isnull=False)
            | Q(source_review__isnull=False)
            | Q(source_escalation__isnull=False)
        )
        .exclude(source_turn__in=held)
        .exclude(source_review__turn__in=held)
        .exclude(source_escalation__turn__in=held)
    )


def _cache_entries(cutoff: datetime) -> QuerySet[AnswerCacheEntry]:
    held = Turn.objects.filter(held_turns()).values("pk")
    return AnswerCacheEntry.objects.filter(created_at__lt=cutoff).exclude(source_turn__in=held)


def _exports(cutoff: datetime) -> QuerySet[Export]:
    return Export.objects.filter(created_at__lt=cutoff).exclude(
        status__in=[Export.Status.QUEUED, Export.Status.RUNNING]
    )


def _extraction_runs(cutoff: datetime) -> QuerySet[ExtractionRun]:
    held = LegalHold.objects.filter(released_at__isnull=True, user__isnull=False).values("user")
    return (
        ExtractionRun.objects.filter(created_at__lt=cutoff)
        .exclude(owner__in=held)
        .exclude(status__in=[ExtractionRun.Status.QUEUED, ExtractionRun.Status.RUNNING])
    )


RULES: dict[str, KindRule] = {
    Kind.CONVERSATIONS: KindRule(_turns, {"user_text": ""}, turn_record),
    Kind.TRACES: KindRule(_under_turn(Span, "started_at"), {"attributes": {}, "error": ""}),
    Kind.JUDGE_RESULTS: KindRule(
        _under_turn(JudgeScore, "created_at"), {"details": {}, "error": ""}
    ),
    Kind.REVIEWS: KindRule(
        _under_turn(Review, "created_at"), {"comment": "", "corrected_answer": ""}
    ),
    Kind.CACHE_ENTRIES: KindRule(_cache_entries),
    Kind.DATASET_ITEMS: KindRule(_dataset_items),
    Kind.EXPORTS: KindRule(_exports),
    Kind.EXTRACTION_RUNS: KindRule(
        _extraction_runs, {"texts": [], "results": [], "source_name": "", "error": ""}
    ),
}


def _pending(rule: KindRule, action: str, cutoff: datetime) -> QuerySet[Any]:
    """What is still to do: anonymising leaves out the rows already blank, so a second pass finds
    nothing (the idempotence every batch loop below relies on to end)."""
    queryset = rule.queryset(cutoff)
    if action == Action.ANONYMISE and rule.blank is not None:
        queryset = queryset.exclude(**rule.blank)
    return queryset


def _remove_batch(kind: str, action: str, ids: list[Any], cutoff: datetime) -> int:
    model = RULES[kind].queryset(cutoff).model
    if kind == Kind.CONVERSATIONS:
        if action == Action.ANONYMISE:
            return turns_anonymise(turn_ids=ids, whole_conversations_before=cutoff)
        removed = turns_delete(turn_ids=ids)
        # A conversation left without turns, untouched since the cutoff, goes too.
        Conversation.objects.filter(updated_at__lt=cutoff, turns__isnull=True).exclude(
            held_conversations()
        ).delete()
        return removed
    blank = RULES[kind].blank
    if action == Action.ANONYMISE and blank is not None:
        return int(model._default_manager.filter(pk__in=ids).update(**blank))
    if kind == Kind.REVIEWS:
        DatasetItem.objects.filter(source_review__in=ids).delete()
    if kind == Kind.EXPORTS:
        held = set(Turn.objects.filter(held_turns()).values_list("pk", flat=True))
        for export in Export.objects.filter(pk__in=ids):
            if held and export_turn_ids(export) & held:
                ids.remove(export.pk)
                continue
            if (path := export_file(export)) is not None:
                path.unlink()
    deleted, _ = model._default_manager.filter(pk__in=ids).delete()
    return len(ids) if deleted else 0


def _kind_run(
    policy: RetentionPolicy, *, now: datetime, dry_run: bool, archive: ArchiveWriter | None
) -> int:
    assert policy.keep_days is not None
    cutoff = now - timedelta(days=policy.keep_days)
    rule = RULES[policy.kind]
    if dry_run:
        return _pending(rule, policy.action, cutoff).count()
    done, skipped_pks = 0, set[Any]()
    while True:
        ids = list(
            _pending(rule, policy.action, cutoff)
            .exclude(pk__in=list(skipped_pks))
            .order_by("pk")
            .values_list("pk", flat=True)[: settings.RETENTION_BATCH_SIZE]
        )
        if not ids:
            return done
        with transaction.atomic():
            if policy.action == Action.ARCHIVE and archive is not None:
                for obj in _pending(rule, policy.action, cutoff).filter(pk__in=ids):
                    archive.write(policy.kind, (rule.record or row)(obj))
            removed = _remove_batch(policy.kind, policy.action, list(ids), cutoff)
        done += removed
        if removed < len(ids):
            # Rows the batch kept (an export holding a held turn): never looked at again this run.
            skipped_pks.update(
                _pending(rule, policy.action, cutoff)
                .filter(pk__in=ids)
                .values_list("pk", flat=True)
            )


def policy_preview(policy: RetentionPolicy, *, now: datetime | None = None) -> int | None:
    """How many records the policy would remove now (None: it keeps forever)."""
    if policy.keep_days is None:
        return None
    cutoff = (now or timezone.now()) - timedelta(days=policy.keep_days)
    return _pending(RULES[policy.kind], policy.action, cutoff).count()


def retention_run(
    *,
    dry_run: bool = False,
    run: RetentionRun | None = None,
    user: User | None = None,
    now: datetime | None = None,
) -> RetentionRun:
    """One pass over every policy; the run row records what went, per kind and action."""
    now = now or timezone.now()
    if run is None:
        run = RetentionRun.objects.create(dry_run=dry_run, requested_by=user)
    run.status = RetentionRun.Status.RUNNING
    run.save(update_fields=["status"])
    archive = None if run.dry_run else ArchiveWriter(name=f"run-{run.pk:06d}")
    counts: dict[str, dict[str, int]] = {}
    try:
        for policy in policies_ensure():
            if policy.keep_days is None:
                continue
            n = _kind_run(policy, now=now, dry_run=run.dry_run, archive=archive)
            counts[policy.kind] = {policy.action: n}
    except Exception as exc:
        logger.exception("retention run %s failed", run.pk)
        run.status, run.error = RetentionRun.Status.FAILED, f"{type(exc).__name__}: {exc}"
    else:
        run.status = RetentionRun.Status.DONE
    manifest = archive.close() if archive is not None else {}
    run.counts, run.finished_at = counts, timezone.now()
    run.archive_path = archive.folder.name if archive is not None and manifest else ""
    run.save(update_fields=["status", "error", "counts", "finished_at", "archive_path"])
    if not run.dry_run:
        # An automatic pass has no actor: the entry says "no one", with what went.
        audit_record("retention.run", target=run, details={"counts": counts}, actor=user)
    return run
