"""Agreement: Cohen's kappa between reviewers, and between each automatic judge and the humans,
per rubric item.

- Reviewers: every item reviewed twice gives one pair, its first review against its second
  ("reviewer 1" and "reviewer 2" are roles, not fixed people: Cohen's kappa between two raters,
  whoever filled each role). Grades are 1-5 categories; the quadratic-weighted kappa beside it
  gives partial credit for near misses (4 against 5 counts as closer than 1 against 5).
- Judges: a judge only says pass or fail, so the human grade is binarised (4 or 5 is a pass)
  and every review of a turn the judge scored gives one pair. A judge is compared only on the
  rubric items it speaks to (`JUDGE_RUBRIC`); when a judge has several versions, each turn's
  score from the newest version that scored it is used.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import cohen_kappa_score

from chatbot.models import Judge, JudgeScore, Review

RUBRIC: tuple[str, ...] = Review.RUBRIC
MIN_PAIRS = 5
HUMAN_PASS = 4
GRADES = (1, 2, 3, 4, 5)
PASS_FAIL = (False, True)

# Which rubric items each kind of judge speaks to.
JUDGE_RUBRIC: dict[str, tuple[str, ...]] = {
    Judge.Kind.FAITHFULNESS_LLM: ("accuracy",),
    Judge.Kind.FAITHFULNESS_OVERLAP: ("accuracy",),
    Judge.Kind.RELEVANCE_LLM: ("relevance",),
    Judge.Kind.TOXICITY: ("tone", "safety"),
    Judge.Kind.PII: ("safety",),
    Judge.Kind.FORMAT: ("completeness",),
    # Trained on the humans' overall verdict, so it is held against every rubric item.
    Judge.Kind.REWARD_MODEL: RUBRIC,
}


@dataclass(frozen=True)
class Kappa:
    value: float | None
    pairs: int
    note: str = ""

    @property
    def label(self) -> str:
        """Landis and Koch's words for the strength of agreement."""
        if self.value is None:
            return ""
        scale = (
            (0, "poor"),
            (0.2, "slight"),
            (0.4, "fair"),
            (0.6, "moderate"),
            (0.8, "substantial"),
        )
        for bound, words in scale:
            if self.value <= bound:
                return words
        return "almost perfect"


def kappa(
    a: Sequence[object],
    b: Sequence[object],
    *,
    labels: Sequence[object] = PASS_FAIL,
    weights: str | None = None,
) -> Kappa:
    """Cohen's kappa of two raters' labels, or n/a with the reason when it is not defined."""
    pairs = len(a)
    if pairs < MIN_PAIRS:
        return Kappa(None, pairs, f"n/a (needs {MIN_PAIRS} pairs, has {pairs})")
    with warnings.catch_warnings():
        # Both raters giving one same label makes kappa 0/0; sklearn warns and returns nan.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        value = float(cohen_kappa_score(list(a), list(b), labels=list(labels), weights=weights))
    if math.isnan(value):
        return Kappa(None, pairs, "n/a (no variation: every label the same)")
    return Kappa(value, pairs)


@dataclass
class Row:
    label: str
    cells: dict[str, Kappa | None] = field(default_factory=dict)
    weighted: dict[str, Kappa | None] = field(default_factory=dict)

    def ordered(self) -> list[tuple[str, Kappa | None, Kappa | None]]:
        return [(name, self.cells.get(name), self.weighted.get(name)) for name in RUBRIC]


@dataclass
class Report:
    reviewers: Row
    judges: list[Row]
    double_reviewed: int
    reviews: int
    mapping: list[tuple[str, str]]


def _reviewer_row(reviews: list[Review]) -> tuple[Row, int]:
    by_item: dict[int, list[Review]] = defaultdict(list)
    for review in reviews:
        by_item[review.item_id].append(review)
    pairs = [(rs[0], rs[1]) for rs in by_item.values() if len(rs) >= 2]
    row = Row("Reviewer 1 vs reviewer 2")
    for name in RUBRIC:
        first = [getattr(p[0], name) for p in pairs]
        second = [getattr(p[1], name) for p in pairs]
        row.cells[name] = kappa(first, second, labels=GRADES)
        row.weighted[name] = kappa(first, second, labels=GRADES, weights="quadratic")
    return row, len(pairs)


def _judge_rows(reviews: list[Review]) -> list[Row]:
    turn_ids = {r.turn_id for r in reviews}
    scores = (
        JudgeScore.objects.filter(
            turn_id__in=turn_ids, status=JudgeScore.Status.DONE, passed__isnull=False
        )
        .select_related("judge")
        .order_by("judge__name", "turn_id", "-judge__version")
    )
    # judge name -> turn id -> passed, newest version first (kept by setdefault).
    verdicts: dict[str, dict[int, bool]] = defaultdict(dict)
    kinds: dict[str, str] = {}
    for score in scores:
        kinds.setdefault(score.judge.name, score.judge.kind)
        verdicts[score.judge.name].setdefault(score.turn_id, bool(score.passed))
    rows = []
    for name in sorted(verdicts):
        row = Row(f"Judge {name} vs humans")
        for item in JUDGE_RUBRIC.get(kinds[name], ()):
            judged = [r for r in reviews if r.turn_id in verdicts[name]]
            humans = [getattr(r, item) >= HUMAN_PASS for r in judged]
            machine = [verdicts[name][r.turn_id] for r in judged]
            row.cells[item] = kappa(humans, machine)
        rows.append(row)
    return rows


def agreement_report() -> Report:
    reviews = list(
        Review.objects.order_by("item_id", "created_at", "pk").only("item_id", "turn_id", *RUBRIC)
    )
    reviewer_row, doubled = _reviewer_row(reviews)
    mapping = [(Judge.Kind(kind).label, ", ".join(items)) for kind, items in JUDGE_RUBRIC.items()]
    return Report(
        reviewers=reviewer_row,
        judges=_judge_rows(reviews),
        double_reviewed=doubled,
        reviews=len(reviews),
        mapping=mapping,
    )
