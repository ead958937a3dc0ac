"""Judging turns again: an admin's re-judge of recent answers, and the periodic sweep that catches
finished turns whose judging was never queued. Neither queues a turn the current judge versions
have already looked at."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from chatbot.celery import app
from chatbot.models import Judge, JudgeScore, Turn
from evaluation import services
from tests.evaluation.judging import finished_turn

pytestmark = pytest.mark.django_db


@pytest.fixture
def judges(cast: dict[str, User]) -> dict[str, Judge]:
    return {j.name: j for j in services.judges_ensure()}


def _judge_fully(turn: Turn) -> None:
    for judge in Judge.objects.filter(enabled=True):
        services.judge_run(turn_id=turn.pk, judge_id=judge.pk)


def _aged(turn: Turn, age: timedelta) -> Turn:
    Turn.objects.filter(pk=turn.pk).update(created_at=timezone.now() - age)
    return turn


def test_it_rejudges_only_turns_the_current_versions_have_not_scored(
    alice: User, judges: dict[str, Judge], django_capture_on_commit_callbacks: Any
) -> None:
    judged = finished_turn(alice)
    _judge_fully(judged)  # faithfulness-overlap and reward-model skip it: that counts as judged
    unjudged = finished_turn(alice)
    old = _aged(finished_turn(alice), timedelta(days=10))
    finished_turn(alice, status=Turn.Status.FAILED)

    with django_capture_on_commit_callbacks(execute=False) as queued:
        count = services.turns_rejudge(days=7)

    assert count == 1 and len(queued) == 1
    assert unjudged.pk != old.pk

    # A new version of a judge has scored nothing yet: every recent turn needs it.
    services.judge_new_version(judge=judges["format"], threshold=0.5)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        assert services.turns_rejudge(days=7) == 2
    assert len(queued) == 2


def test_it_rejudges_a_failed_score_but_the_sweep_leaves_it(
    alice: User, judges: dict[str, Judge]
) -> None:
    turn = _aged(finished_turn(alice), timedelta(minutes=30))
    _judge_fully(turn)
    JudgeScore.objects.filter(turn=turn, judge=judges["pii"]).update(
        status=JudgeScore.Status.FAILED, score=None
    )

    assert services.turns_rejudge(days=1) == 1
    assert services.turns_judge_sweep() == 0


def test_the_sweep_queues_recent_turns_no_judge_looked_at(
    alice: User, judges: dict[str, Judge], django_capture_on_commit_callbacks: Any
) -> None:
    missed = _aged(finished_turn(alice), timedelta(minutes=30))
    _aged(finished_turn(alice), timedelta(days=3))  # outside the sweep's window
    finished_turn(alice)  # just finished: its own judging task is still on the way
    judged = _aged(finished_turn(alice), timedelta(minutes=30))
    _judge_fully(judged)

    with django_capture_on_commit_callbacks(execute=True) as queued:
        count = services.turns_judge_sweep()

    assert count == 1 and len(queued) == 1
    assert missed.pk != judged.pk


def test_the_sweep_queues_nothing_when_no_judge_is_on(
    alice: User, judges: dict[str, Judge]
) -> None:
    Judge.objects.update(enabled=False)
    _aged(finished_turn(alice), timedelta(minutes=30))

    assert services.turns_judge_sweep() == 0


def test_it_schedules_the_sweep_in_beat() -> None:
    tasks = {entry["task"] for entry in app.conf.beat_schedule.values()}
    # What a worker does at start: import the task modules autodiscovery names.
    app.loader.import_default_modules()

    assert "evaluation.turns_judge_sweep" in tasks
    assert "evaluation.turns_judge_sweep" in app.tasks
    assert "evaluation.turns_rejudge" in app.tasks
    assert {"evaluation.export_run", "evaluation.reward_train"} <= set(app.tasks)
