"""The retention job: old turns go with everything derived from them, held ones stay, anonymising
keeps the dashboard's figures, a second pass removes nothing more, and each run is audited."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.management import call_command

from chatbot.celery import app as celery_app
from chatbot.models import (
    AnswerCacheEntry,
    AuditEntry,
    Conversation,
    DatasetItem,
    Escalation,
    Feedback,
    JudgeScore,
    RetentionPolicy,
    RetentionRun,
    Review,
    ReviewItem,
    Span,
    Turn,
)
from evaluation.retention.derived import export_turn_ids
from evaluation.retention.services import (
    hold_release,
    hold_set,
    policies_ensure,
    policy_update,
    retention_run,
)
from evaluation.retention.tasks import retention_run_task
from observability import rollups
from tests.compliance.support import export_with, turn_with_everything

pytestmark = pytest.mark.django_db

Kind = RetentionPolicy.Kind


@pytest.fixture(autouse=True)
def _folders(settings: Any, tmp_path: Path) -> None:
    settings.EXPORTS_DIR = tmp_path / "exports"
    settings.RETENTION_ARCHIVE_DIR = tmp_path / "archive"


def _policy(kind: str, keep_days: int | None, action: str, adam: User) -> None:
    policies_ensure()
    policy_update(
        policy=RetentionPolicy.objects.get(kind=kind), keep_days=keep_days, action=action, user=adam
    )


def test_the_defaults_keep_everything(alice: User, rita: User) -> None:
    made = turn_with_everything(alice, reviewer=rita, days_ago=400)
    assert {p.keep_days for p in policies_ensure()} == {None}
    run = retention_run()
    assert run.status == RetentionRun.Status.DONE and run.counts == {}
    assert Turn.objects.filter(pk=made.turn.pk).exists()


def test_old_turns_go_with_everything_derived_and_held_ones_stay(
    alice: User, rita: User, adam: User
) -> None:
    old = turn_with_everything(alice, reviewer=rita, days_ago=100, question="old one")
    held = turn_with_everything(alice, reviewer=rita, days_ago=100, question="held one")
    held_person = turn_with_everything(rita, reviewer=adam, days_ago=100, question="rita's")
    recent = turn_with_everything(alice, reviewer=rita, days_ago=5, question="recent one")
    export = export_with([old.turn, held.turn, recent.turn])
    hold_set(conversation=held.conversation, reason="litigation 42", by=adam)
    hold_set(user=rita, reason="investigation", by=adam)
    _policy(Kind.CONVERSATIONS, 30, RetentionPolicy.Action.DELETE, adam)

    run = retention_run()

    assert run.counts == {Kind.CONVERSATIONS: {"delete": 1}}
    gone = old.turn.pk
    assert not Turn.objects.filter(pk=gone).exists()
    assert not Conversation.objects.filter(pk=old.conversation.pk).exists()
    for model in (Span, Feedback, JudgeScore, ReviewItem, Review, Escalation):
        assert not model.objects.filter(turn_id=gone).exists(), model.__name__
    assert not AnswerCacheEntry.objects.filter(source_turn_id=gone).exists()
    assert not DatasetItem.objects.filter(question="old one").exists()
    assert export_turn_ids(export) == {held.turn.pk, recent.turn.pk}
    export.refresh_from_db()
    assert export.rows_written == 2 and export.params["rows_removed"] == 1
    for kept in (held, held_person, recent):
        assert Turn.objects.filter(pk=kept.turn.pk).exists()
        assert DatasetItem.objects.filter(source_turn=kept.turn).exists()

    again = retention_run()
    assert again.counts == {Kind.CONVERSATIONS: {"delete": 0}}

    entry = AuditEntry.objects.get(action="retention.run", target_id=str(run.pk))
    assert entry.actor_id is None and entry.category == AuditEntry.Category.ADMIN
    assert entry.details["counts"] == {Kind.CONVERSATIONS: {"delete": 1}}
    assert AuditEntry.objects.filter(action="legal_hold.set").count() == 2
    assert AuditEntry.objects.filter(action="retention.policy").exists()


def test_a_released_hold_no_longer_protects(alice: User, rita: User, adam: User) -> None:
    held = turn_with_everything(alice, reviewer=rita, days_ago=100)
    hold = hold_set(user=alice, reason="audit", by=adam)
    _policy(Kind.CONVERSATIONS, 30, RetentionPolicy.Action.DELETE, adam)
    assert retention_run().counts[Kind.CONVERSATIONS] == {"delete": 0}
    hold_release(hold=hold, by=adam)
    assert AuditEntry.objects.filter(action="legal_hold.release").exists()
    assert retention_run().counts[Kind.CONVERSATIONS] == {"delete": 1}
    assert not Turn.objects.filter(pk=held.turn.pk).exists()


def test_a_dry_run_counts_and_changes_nothing(alice: User, rita: User, adam: User) -> None:
    made = turn_with_everything(alice, reviewer=rita, days_ago=100)
    _policy(Kind.CONVERSATIONS, 30, RetentionPolicy.Action.DELETE, adam)
    call_command("retention_run", "--dry-run")
    run = RetentionRun.objects.get()
    assert run.dry_run and run.counts == {Kind.CONVERSATIONS: {"delete": 1}}
    assert Turn.objects.filter(pk=made.turn.pk).exists()
    assert not AuditEntry.objects.filter(action="retention.run").exists()


def test_anonymising_keeps_the_dashboard_figures(alice: User, rita: User, adam: User) -> None:
    made = turn_with_everything(alice, reviewer=rita, days_ago=100)
    hour = made.turn.created_at.replace(minute=0, second=0, microsecond=0)
    rollups.hours_recompute(hours=[hour])
    day = hour.date()
    filters = rollups.Filters(start=day, end=day)
    before = rollups.rollup_totals(filters, by="day")
    assert before[day]["turns"] == 1
    _policy(Kind.CONVERSATIONS, 30, RetentionPolicy.Action.ANONYMISE, adam)

    run = retention_run()

    assert run.counts == {Kind.CONVERSATIONS: {"anonymise": 1}}
    turn = Turn.objects.get(pk=made.turn.pk)
    assert (turn.user_text, turn.answer) == ("", "")
    assert (turn.tokens_in, turn.tokens_out, turn.cost, turn.total_ms) == (
        11,
        7,
        made.turn.cost,
        900.0,
    )
    conversation = Conversation.objects.get(pk=made.conversation.pk)
    assert conversation.owner != alice and conversation.title == ""
    assert Feedback.objects.get(turn=turn).comment == ""
    assert Review.objects.get(turn=turn).corrected_answer == ""
    assert Escalation.objects.get(turn=turn).reason == ""
    assert Span.objects.get(turn=turn).attributes == {}
    assert not AnswerCacheEntry.objects.filter(source_turn=turn).exists()
    assert not DatasetItem.objects.filter(source_turn=turn).exists()
    assert rollups.rollup_totals(filters, by="day") == before
    # Even recomputing that hour from the raw rows gives the same figures.
    rollups.hours_recompute(hours=[hour])
    assert rollups.rollup_totals(filters, by="day") == before
    assert retention_run().counts == {Kind.CONVERSATIONS: {"anonymise": 0}}


def test_other_kinds_go_by_their_own_age(
    alice: User, rita: User, adam: User, settings: Any
) -> None:
    made = turn_with_everything(alice, reviewer=rita, days_ago=100)
    old_export = export_with([made.turn], days_ago=100)
    _policy(Kind.TRACES, 30, RetentionPolicy.Action.DELETE, adam)
    _policy(Kind.JUDGE_RESULTS, 30, RetentionPolicy.Action.ANONYMISE, adam)
    _policy(Kind.CACHE_ENTRIES, 30, RetentionPolicy.Action.DELETE, adam)
    _policy(Kind.EXPORTS, 30, RetentionPolicy.Action.DELETE, adam)

    run = retention_run()

    assert run.counts == {
        Kind.CACHE_ENTRIES: {"delete": 1},
        Kind.EXPORTS: {"delete": 1},
        Kind.JUDGE_RESULTS: {"anonymise": 1},
        Kind.TRACES: {"delete": 1},
    }
    assert Turn.objects.filter(pk=made.turn.pk).exists()
    assert not Span.objects.filter(turn=made.turn).exists()
    assert JudgeScore.objects.get(turn=made.turn).details == {}
    assert not (Path(settings.EXPORTS_DIR) / old_export.path).exists()


def test_a_policy_shorter_than_the_rollup_window_is_refused(adam: User) -> None:
    policies_ensure()
    with pytest.raises(ValidationError):
        policy_update(
            policy=RetentionPolicy.objects.get(kind=Kind.CONVERSATIONS),
            keep_days=3,
            action="delete",
            user=adam,
        )


def test_the_task_runs_a_queued_run_and_beat_runs_it_daily(
    alice: User, rita: User, adam: User
) -> None:
    turn_with_everything(alice, reviewer=rita, days_ago=100)
    _policy(Kind.CONVERSATIONS, 30, RetentionPolicy.Action.DELETE, adam)
    run = RetentionRun.objects.create(requested_by=adam)
    assert retention_run_task(run.pk) == RetentionRun.Status.DONE
    run.refresh_from_db()
    assert run.counts == {Kind.CONVERSATIONS: {"delete": 1}} and run.finished_at is not None
    assert AuditEntry.objects.get(action="retention.run").actor_id == adam.pk
    schedule = {
        entry["task"]: entry["schedule"] for entry in celery_app.conf.beat_schedule.values()
    }
    assert schedule["evaluation.retention_run"] == 86400.0
