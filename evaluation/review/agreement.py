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

import logging
import math
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import cohen_kappa_score

from chatbot.models import Judge, JudgeScore, Review
from chatbot.models.judges import TRUST_MIN_KAPPA

logger = logging.getLogger(__name__)

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
    Judge.Kind.POLICY_LLM: ("safety",),
    Judge.Kind.HELPFULNESS_LLM: ("completeness",),
    Judge.Kind.READABILITY_LLM: ("tone",),
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


def _verdicts(
    turn_ids: Iterable[int] | QuerySet[Any, Any],
) -> tuple[dict[str, dict[int, bool]], dict[str, str]]:
    """judge name -> turn id -> passed, each turn's newest scoring version; and each name's kind.
    `turn_ids` is a collection or a subquery of turn ids."""
    scores = (
        JudgeScore.objects.filter(
            turn_id__in=turn_ids, status=JudgeScore.Status.DONE, passed__isnull=False
        )
        .order_by("judge__name", "turn_id", "-judge__version")
        .values_list("judge__name", "judge__kind", "turn_id", "passed")
    )
    verdicts: dict[str, dict[int, bool]] = defaultdict(dict)
    kinds: dict[str, str] = {}
    for name, kind, turn_id, passed in scores:
        kinds.setdefault(name, kind)
        # Newest version first: setdefault keeps it.
        verdicts[name].setdefault(turn_id, bool(passed))
    return verdicts, kinds


def _judge_rows(reviews: list[Review]) -> list[Row]:
    verdicts, kinds = _verdicts({r.turn_id for r in reviews})
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


# --- trust: may a judge's verdicts put answers in front of reviewers? ----------------------------

# A kappa from 5 pairs (the agreement page's minimum) swings by +-0.4 with one disagreement more;
# a judge is only called untrustworthy, and kept out of flagging, on at least this many reviews.
TRUST_MIN_PAIRS = 20
Trust = Judge.Trust


@dataclass(frozen=True)
class JudgeTrust:
    """One judge's (by name, all versions) agreement with human reviews on the rubric items it
    speaks to: the human says pass when every one of those items is graded 4 or 5."""

    name: str
    kind: str
    items: tuple[str, ...]
    kappa: float | None
    pairs: int
    state: str

    @property
    def state_label(self) -> str:
        return Trust(self.state).label

    @property
    def trusted_for_flagging(self) -> bool:
        return self.state != Trust.UNTRUSTWORTHY

    @property
    def note(self) -> str:
        return trust_note(self.state, self.kappa, self.pairs)


def trust_note(state: str, kappa_value: float | None, pairs: int) -> str:
    """The state in words, with the figures it rests on."""
    k = f"κ {kappa_value:.2f}" if kappa_value is not None else "κ n/a"
    reviews = f"{pairs} review{'s' if pairs != 1 else ''}"
    if state == Trust.TRUSTED:
        return f"Trusted: {k} against humans on {reviews}."
    if state == Trust.UNTRUSTWORTHY:
        return (
            f"Untrustworthy: {k} against humans on {reviews}, under {TRUST_MIN_KAPPA:g}; "
            "its failures do not flag answers until it improves."
        )
    if state == Trust.NO_VARIATION:
        return (
            f"No disagreement to measure yet: on {reviews}, the humans or the judge gave one "
            "verdict throughout, so κ is not defined."
        )
    have = f" ({k} so far)" if kappa_value is not None else ""
    return f"Not enough reviews yet: {pairs} of {TRUST_MIN_PAIRS}{have}."


def _trust_state(value: Kappa) -> str:
    if value.pairs < TRUST_MIN_PAIRS:
        return Trust.TOO_FEW
    if value.value is None:
        return Trust.NO_VARIATION
    return Trust.TRUSTED if value.value >= TRUST_MIN_KAPPA else Trust.UNTRUSTWORTHY


def judge_trust_all() -> list[JudgeTrust]:
    """Every judge's agreement with the humans, computed now from all reviews (two queries), in
    name order; judges no reviewed turn has scored are listed with 0 pairs. For the console and
    the weekly report; flagging reads the stored copy (`judge_trust_refresh`)."""
    reviews = list(Review.objects.order_by("pk").values_list("turn_id", *RUBRIC))
    verdicts, _ = _verdicts(Review.objects.values("turn_id"))
    kinds = dict(Judge.objects.order_by("name", "-version").values_list("name", "kind"))
    result = []
    for name, kind in sorted(kinds.items()):
        items = JUDGE_RUBRIC.get(kind, RUBRIC)
        indexes = [RUBRIC.index(item) + 1 for item in items]
        judged = verdicts.get(name, {})
        pairs = [
            (all(row[i] >= HUMAN_PASS for i in indexes), judged[row[0]])
            for row in reviews
            if row[0] in judged
        ]
        value = kappa([h for h, _ in pairs], [m for _, m in pairs])
        result.append(
            JudgeTrust(
                name=name, kind=kind, items=items, kappa=value.value, pairs=len(pairs),
                state=_trust_state(value),
            )
        )  # fmt: skip
    return result


def judge_trust_refresh() -> list[JudgeTrust]:
    """Compute every judge's trust and store it on its versions, where flagging reads it. Safe
    to run any number of times; a judge whose state changes is logged."""
    trusts = judge_trust_all()
    now = timezone.now()
    before = dict(Judge.objects.values_list("name", "trust_state"))
    with transaction.atomic():
        for trust in trusts:
            Judge.objects.filter(name=trust.name).update(
                trust_kappa=trust.kappa,
                trust_pairs=trust.pairs,
                trust_state=trust.state,
                trust_checked_at=now,
            )
    for trust in trusts:
        if before.get(trust.name) != trust.state:
            logger.info("judge %s: %s", trust.name, trust.note)
    return trusts
