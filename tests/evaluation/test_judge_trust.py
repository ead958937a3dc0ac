"""Judges that can be trusted: each judge's Cohen's kappa against the human reviews, stored where
flagging reads it; an untrustworthy judge (kappa under 0.4 on enough reviews) flags nothing until
it improves; kappa, n and the state shown in the console and on the review item."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from celery.contrib.testing.worker import TestWorkController
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chatbot.celery import app as celery_app
from chatbot.models import FlagRule, Judge, JudgeScore, Review, ReviewItem, Turn
from evaluation.review import services as review_services
from evaluation.review.agreement import TRUST_MIN_PAIRS, judge_trust_all, judge_trust_refresh
from evaluation.review.flagging import turn_flag
from evaluation.tasks import judge_trust_refresh_task
from tests.evaluation.judging import finished_turn
from tests.evaluation.review.support import flagged_item, judge_score, rules

pytestmark = pytest.mark.django_db

NAME = "strict-tone"
KIND = Judge.Kind.TOXICITY  # speaks to tone and safety: the human passes when both are 4 or 5

# Humans pass half and fail half; the judge passes every other answer: agreement at chance.
CHANCE = [(i < 10, i % 2 == 0) for i in range(20)]  # kappa 0.0 on 20 pairs
# Thirty more where both agree, half pass and half fail: kappa (40/50 - 0.5) / 0.5 = 0.6.
AGREE = [(True, True)] * 15 + [(False, False)] * 15


def reviewed(reviewer: User, author: User, pairs: list[tuple[bool, bool]]) -> list[Turn]:
    """One finished, judged and reviewed turn per (human passes, judge passes) pair."""
    turns = []
    for human, machine in pairs:
        turn = finished_turn(author, answer="Open the sign-in page and click Forgot password.")
        judge_score(turn, name=NAME, kind=KIND, passed=machine)
        item = ReviewItem.objects.create(turn=turn, status=ReviewItem.Status.DONE)
        grade = 5 if human else 2
        Review.objects.create(
            item=item, turn=turn, reviewer=reviewer,
            **{name: grade for name in Review.RUBRIC},
        )  # fmt: skip
        turns.append(turn)
    return turns


def trust_of(name: str = NAME) -> dict[str, object]:
    found = {t.name: t for t in judge_trust_all()}[name]
    return {"kappa": found.kappa, "pairs": found.pairs, "state": found.state}


def failing_turn(author: User) -> Turn:
    turn = finished_turn(author, answer="Click Forgot password.")
    judge_score(turn, name=NAME, kind=KIND, passed=False)
    return turn


def test_it_says_how_many_reviews_a_judge_still_needs(rita: User, alice: User) -> None:
    reviewed(rita, alice, AGREE[:3] + AGREE[-3:])

    trust = {t.name: t for t in judge_trust_all()}[NAME]

    assert (trust.pairs, trust.state) == (6, Judge.Trust.TOO_FEW)
    assert trust.kappa == 1.0, "kappa is shown once defined, but too few reviews decide nothing"
    assert trust.note == f"Not enough reviews yet: 6 of {TRUST_MIN_PAIRS} (κ 1.00 so far)."
    assert trust.items == ("tone", "safety")


def test_it_marks_a_judge_at_chance_untrustworthy_and_a_good_one_trusted(
    rita: User, alice: User
) -> None:
    reviewed(rita, alice, CHANCE)
    assert trust_of() == {"kappa": 0.0, "pairs": 20, "state": Judge.Trust.UNTRUSTWORTHY}

    reviewed(rita, alice, AGREE)
    assert trust_of() == {"kappa": pytest.approx(0.6), "pairs": 50, "state": Judge.Trust.TRUSTED}


def test_it_cannot_measure_a_judge_that_never_disagrees_with_anyone(
    rita: User, alice: User
) -> None:
    reviewed(rita, alice, [(True, True)] * TRUST_MIN_PAIRS)

    assert trust_of() == {"kappa": None, "pairs": 20, "state": Judge.Trust.NO_VARIATION}


def test_it_uses_each_turns_newest_judge_version(rita: User, alice: User) -> None:
    turns = reviewed(rita, alice, CHANCE)
    # Version 2 agrees with the humans on every answer version 1 got wrong.
    for turn, (human, _) in zip(turns, CHANCE, strict=True):
        judge_score(turn, name=NAME, kind=KIND, passed=human, version=2)

    assert trust_of() == {"kappa": 1.0, "pairs": 20, "state": Judge.Trust.TRUSTED}


def test_it_stores_the_trust_on_every_version_and_twice_changes_nothing(
    rita: User, alice: User
) -> None:
    turns = reviewed(rita, alice, CHANCE)
    judge_score(turns[0], name=NAME, kind=KIND, passed=True, version=2)

    judge_trust_refresh()
    first = list(Judge.objects.filter(name=NAME).values_list("trust_state", "trust_pairs"))
    judge_trust_refresh_task.apply()

    assert first == [(Judge.Trust.UNTRUSTWORTHY, 20)] * 2
    assert list(Judge.objects.filter(name=NAME).values_list("trust_state", "trust_pairs")) == first
    assert Judge.objects.filter(name=NAME).count() == 2


def test_it_keeps_an_untrustworthy_judge_out_of_flagging_until_it_improves(
    rita: User, alice: User
) -> None:
    rules()
    reviewed(rita, alice, CHANCE)
    judge_trust_refresh()

    ignored = failing_turn(alice)
    assert turn_flag(turn_id=ignored.pk) is None
    score = JudgeScore.objects.get(turn=ignored)
    assert score.flag_ignored == (
        f"Not used to flag: {NAME} was untrustworthy (κ 0.00 against humans on 20 reviews, "
        "under 0.4)."
    )

    reviewed(rita, alice, AGREE)
    judge_trust_refresh()

    resumed = failing_turn(alice)
    item = turn_flag(turn_id=resumed.pk)
    assert item is not None and [r["kind"] for r in item.reasons] == [FlagRule.Kind.JUDGE_BELOW]
    assert f"{NAME} v1 scored 0.10" in item.reasons[0]["reason"]
    # The earlier turn, flagged again (say, a thumbs down), now counts the judge: the note goes.
    again = turn_flag(turn_id=ignored.pk)
    assert again is not None and again.reasons[0]["kind"] == FlagRule.Kind.JUDGE_BELOW
    assert JudgeScore.objects.get(turn=ignored).flag_ignored == ""


def test_it_says_which_failing_judge_was_not_counted_beside_one_that_was(
    rita: User, alice: User
) -> None:
    rules()
    reviewed(rita, alice, CHANCE)
    judge_trust_refresh()
    turn = failing_turn(alice)
    judge_score(turn, name="format", kind=Judge.Kind.FORMAT, passed=False)

    item = turn_flag(turn_id=turn.pk)

    assert item is not None
    assert item.reasons[0]["reason"] == (
        "Judge under threshold: format v1 scored 0.10 (threshold 0.5); "
        f"not counted, untrustworthy: {NAME} v1"
    )


def test_it_reads_the_stored_trust_when_flagging(
    rita: User, alice: User, django_assert_num_queries: Any
) -> None:
    rules()
    reviewed(rita, alice, CHANCE)
    judge_trust_refresh()
    turn = failing_turn(alice)
    judge_score(turn, name="format", kind=Judge.Kind.FORMAT, passed=False)
    turn_flag(turn_id=turn.pk)  # writes the note once

    # Savepoint, the turn locked, rules, thumbs, escalation, the failing scores with their
    # judges' stored trust, the item, release: no kappa is computed on this path.
    with django_assert_num_queries(8):
        turn_flag(turn_id=turn.pk)


@pytest.mark.django_db(transaction=True)
def test_it_refreshes_trust_after_a_review_in_a_real_worker(
    rita: User, alice: User, worker: TestWorkController
) -> None:
    Judge.objects.create(name=NAME, kind=KIND)
    item = flagged_item(alice)
    assignment = review_services.review_claim(reviewer=rita, item=item)

    review_services.review_submit(
        assignment=assignment, grades={name: "4" for name in Review.RUBRIC}
    )

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if Judge.objects.filter(name=NAME, trust_checked_at__isnull=False).exists():
            break
        time.sleep(0.2)
    assert Judge.objects.get(name=NAME).trust_checked_at is not None


def test_it_refreshes_trust_periodically() -> None:
    scheduled = {entry["task"] for entry in celery_app.conf.beat_schedule.values()}
    assert "evaluation.judge_trust_refresh" in scheduled


def test_it_shows_kappa_n_and_state_in_the_console(
    client_as: Callable[[User], Client], adam: User, rita: User, alice: User
) -> None:
    reviewed(rita, alice, CHANCE)
    judge_trust_refresh()
    Judge.objects.create(name="format", kind=Judge.Kind.FORMAT)

    body = client_as(adam).get(reverse("console:judges")).content.decode()

    assert "Agreement with humans" in body
    assert '<span class="badge badge-error">Untrustworthy</span>' in body
    assert "κ 0.00 · n=20" in body
    assert "Untrustworthy: κ 0.00 against humans on 20 reviews, under 0.4" in body
    assert '<span class="badge badge-off">Too few reviews</span>' in body
    assert "κ n/a · n=0" in body

    judge = Judge.objects.get(name=NAME)
    form = client_as(adam).get(reverse("console:judge_edit", args=[judge.pk])).content.decode()
    assert "Untrustworthy: κ 0.00 against humans on 20 reviews" in form


def test_it_shows_each_judges_trust_beside_its_score_on_the_review_item(
    client_as: Callable[[User], Client], rita: User, alice: User
) -> None:
    rules()
    reviewed(rita, alice, CHANCE)
    judge_trust_refresh()
    turn = failing_turn(alice)
    judge_score(turn, name="format", kind=Judge.Kind.FORMAT, passed=True)
    assert turn_flag(turn_id=turn.pk) is None
    item = ReviewItem.objects.create(turn=turn, reasons=[])

    body = client_as(rita).get(reverse("review:item", args=[item.pk])).content.decode()

    assert "Agreement with humans" in body
    assert "κ 0.00 · n=20" in body and "Untrustworthy" in body
    assert f"Not used to flag: {NAME} was untrustworthy" in body
    assert "Too few reviews" in body  # format: no reviews of its turns yet


def test_it_refuses_nora_the_pages_that_show_trust(
    client_as: Callable[[User], Client], nora: User, alice: User
) -> None:
    item = ReviewItem.objects.create(turn=failing_turn(alice), reasons=[])
    client = client_as(nora)

    assert client.get(reverse("console:judges")).status_code == 403
    assert client.get(reverse("review:item", args=[item.pk])).status_code == 403
