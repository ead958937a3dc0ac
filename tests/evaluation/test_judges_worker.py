"""A finished turn is judged by a real Celery worker over the test Redis, queued by turn_finish."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from celery.contrib.testing.worker import TestWorkController
from django.contrib.auth.models import User

from chatbot.models import Judge, JudgeScore, ModelEndpoint, Span, Turn
from evaluation import services
from tests.evaluation.judging import finished_turn

pytestmark = pytest.mark.django_db(transaction=True)


def _wait_for_scores(turn: Turn, count: int) -> list[JudgeScore]:
    # A deadline so a broken worker fails the test instead of hanging it; not a timing claim.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        scores = list(JudgeScore.objects.filter(turn=turn).select_related("judge"))
        if len(scores) >= count:
            return scores
        time.sleep(0.2)
    raise AssertionError(f"the worker stored {JudgeScore.objects.filter(turn=turn).count()} scores")


def test_it_judges_a_finished_turn_in_a_real_worker(
    alice: User, fake_endpoint: Callable[..., ModelEndpoint], worker: TestWorkController
) -> None:
    fake_endpoint(["It answers the question directly. Score: 5"])
    judges = {j.name: j for j in services.judges_ensure()}
    services.judge_new_version(judge=judges["relevance-llm"], enabled=True)

    turn = finished_turn(alice, answer="Open the sign-in page and click Forgot password.")

    scores = {s.judge.name: s for s in _wait_for_scores(turn, 4)}
    assert set(scores) == {"toxicity", "pii", "format", "relevance-llm"}
    assert all(s.status == JudgeScore.Status.DONE and s.passed for s in scores.values())
    assert scores["relevance-llm"].score == 1.0
    assert scores["relevance-llm"].judge.version == 2
    spans = Span.objects.filter(turn=turn, kind=Span.Kind.JUDGE)
    # faithfulness-overlap does not apply to a turn without context, nor reward-model before a
    # model is trained: a span says why, no score.
    deadline = time.monotonic() + 60
    while spans.count() < 6 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sorted(s.attributes["judge"] for s in spans) == [
        "faithfulness-overlap", "format", "pii", "relevance-llm", "reward-model", "toxicity",
    ]  # fmt: skip
    turn.refresh_from_db()
    assert turn.status == Turn.Status.DONE


def test_it_does_not_judge_a_failed_turn_in_the_worker(
    alice: User, worker: TestWorkController
) -> None:
    services.judges_ensure()
    failed = finished_turn(alice, status=Turn.Status.FAILED)
    done = finished_turn(alice)

    # Tasks run in order on the solo worker: once the later turn is judged, the failed one
    # would have been too.
    _wait_for_scores(done, 3)
    assert not JudgeScore.objects.filter(turn=failed).exists()
    assert not Span.objects.filter(turn=failed, kind=Span.Kind.JUDGE).exists()
    assert Judge.objects.filter(enabled=True).count() == 5
