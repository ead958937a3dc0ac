"""Cohen's kappa between reviewers and between judges and humans, checked against hand sums."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chatbot.models import Judge, Review
from evaluation.review import services
from evaluation.review.agreement import GRADES, agreement_report, kappa
from tests.evaluation.review.support import flagged_item, judge_score

pytestmark = pytest.mark.django_db
SAME = {"completeness": 4, "relevance": 5, "tone": 5, "safety": 5}


def _review(user: User, accuracy: int) -> None:
    assignment = services.review_next(reviewer=user)
    assert assignment is not None
    services.review_submit(assignment=assignment, grades={"accuracy": accuracy, **SAME})


def test_it_computes_kappa_between_reviewers_as_checked_by_hand(
    alice: User, rita: User, adam: User
) -> None:
    # Accuracy, reviewer 1 vs reviewer 2 on five items: (5,5) (4,4) (2,2) (5,4) (1,2).
    #   Observed agreement p_o = 3/5 = 0.6.
    #   Reviewer 1 marginals: 5:2/5, 4:1/5, 2:1/5, 1:1/5; reviewer 2: 5:1/5, 4:2/5, 2:2/5.
    #   Chance agreement p_e = (2/5)(1/5) + (1/5)(2/5) + (1/5)(2/5) + (1/5)(0) = 6/25 = 0.24.
    #   kappa = (0.6 - 0.24) / (1 - 0.24) = 0.36 / 0.76 = 9/19 = 0.4737.
    # Quadratic weights w = (i - j)^2: observed sum w*O = 1 + 1 = 2; expected sum w*E
    #   = (1/5) * sum a_i b_j (i - j)^2 = (36 + 17 + 9 + 40) / 5 = 20.4, so 1 - 2/20.4 = 46/51.
    for first, second in [(5, 5), (4, 4), (2, 2), (5, 4), (1, 2)]:
        flagged_item(alice, double=True)
        _review(rita, first)
        _review(adam, second)

    report = agreement_report()
    assert report.double_reviewed == 5 and report.reviews == 10
    accuracy = report.reviewers.cells["accuracy"]
    assert accuracy is not None and accuracy.value == pytest.approx(9 / 19)
    assert accuracy.pairs == 5 and accuracy.label == "moderate"
    weighted = report.reviewers.weighted["accuracy"]
    assert weighted is not None and weighted.value == pytest.approx(46 / 51)
    # Both reviewers gave every answer a 5 for tone: kappa is 0/0, shown as n/a with the reason.
    tone = report.reviewers.cells["tone"]
    assert tone is not None and tone.value is None and "no variation" in tone.note


def test_it_computes_kappa_between_a_judge_and_the_humans_as_checked_by_hand(
    alice: User, rita: User
) -> None:
    # Human accuracy pass (grade >= 4): T T T F F T; the judge's verdicts: T T F F T T.
    #   p_o = 4/6 = 2/3. Humans pass 4/6, judge passes 4/6.
    #   p_e = (4/6)(4/6) + (2/6)(2/6) = 20/36 = 5/9.
    #   kappa = (2/3 - 5/9) / (1 - 5/9) = (1/9) / (4/9) = 0.25.
    humans = [5, 4, 5, 2, 1, 4]
    verdicts = [True, True, False, False, True, True]
    for n, (grade, verdict) in enumerate(zip(humans, verdicts, strict=True)):
        item = flagged_item(alice, question=f"Question {n}?")
        # An older version said the opposite; the newest version that scored the turn counts.
        judge_score(item.turn, name="overlap", kind=Judge.Kind.FAITHFULNESS_OVERLAP,
                    passed=not verdict, version=1)  # fmt: skip
        judge_score(item.turn, name="overlap", kind=Judge.Kind.FAITHFULNESS_OVERLAP,
                    passed=verdict, version=2)  # fmt: skip
        judge_score(item.turn, name="toxicity", kind=Judge.Kind.TOXICITY, passed=True)
        _review(rita, grade)

    rows = {row.label: row for row in agreement_report().judges}
    overlap = rows["Judge overlap vs humans"]
    accuracy = overlap.cells["accuracy"]
    assert accuracy is not None and accuracy.value == pytest.approx(0.25) and accuracy.pairs == 6
    assert set(overlap.cells) == {"accuracy"}, "a faithfulness judge speaks to accuracy only"
    assert set(rows["Judge toxicity vs humans"].cells) == {"tone", "safety"}


def test_it_says_how_many_pairs_kappa_needs() -> None:
    few = kappa([1, 2, 3, 4], [1, 2, 3, 5], labels=GRADES)
    assert few.value is None and few.note == "n/a (needs 5 pairs, has 4)"
    perfect = kappa([True, False, True, False, True], [True, False, True, False, True])
    assert perfect.value == pytest.approx(1.0) and perfect.label == "almost perfect"


def test_it_shows_kappa_on_the_agreement_page(
    alice: User, rita: User, adam: User, client_as: Callable[[User], Client]
) -> None:
    for first, second in [(5, 5), (4, 4), (2, 2), (5, 4), (1, 2)]:
        flagged_item(alice, double=True)
        _review(rita, first)
        _review(adam, second)
    body = client_as(adam).get(reverse("review:agreement")).content.decode()
    assert "<strong>0.47</strong>" in body  # 9/19
    assert "<strong>0.90</strong>" in body  # 46/51, weighted
    assert "n/a (no variation" in body
    assert Review.objects.count() == 10
