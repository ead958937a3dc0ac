"""End to end: a finished turn is judged by a real Celery worker and lands in the review queue."""

from __future__ import annotations

import time

import pytest
from celery.contrib.testing.worker import TestWorkController
from django.contrib.auth.models import User

from chatbot.models import Judge, ReviewItem
from tests.evaluation.judging import finished_turn
from tests.evaluation.review.support import rules

pytestmark = pytest.mark.django_db(transaction=True)


def _reasons(turn_id: int, count: int) -> list[str]:
    # A deadline so a broken worker fails the test instead of hanging it; not a timing claim.
    deadline = time.monotonic() + 120
    kinds: list[str] = []
    while time.monotonic() < deadline:
        item = ReviewItem.objects.filter(turn_id=turn_id).first()
        kinds = sorted(r["kind"] for r in item.reasons) if item else []
        if len(kinds) >= count:
            return kinds
        time.sleep(0.2)
    raise AssertionError(f"the worker flagged turn {turn_id} with {kinds}")


def test_it_flags_a_judged_turn_in_a_real_worker(alice: User, worker: TestWorkController) -> None:
    rules()
    Judge.objects.create(
        name="format", kind=Judge.Kind.FORMAT, threshold=1.0, options={"max_chars": 10}
    )
    turn = finished_turn(alice, answer="I could not find that anywhere, sorry.", no_answer=True)
    assert _reasons(turn.pk, 2) == ["judge_below", "no_answer"]
    item = ReviewItem.objects.get(turn=turn)
    assert item.priority == 60
