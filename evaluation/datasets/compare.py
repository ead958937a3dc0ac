"""Two experiments side by side: each score's mean with a 95% confidence interval, wins / losses
/ ties over the items both ran, and the items whose outcome changed.

Pure functions over stored results; the page and the tests call them the same way. "A" is the
baseline and "B" the candidate: a win is an item where B scored higher than A by more than the
tolerance.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from scipy import stats

from chatbot.models import ExperimentResult
from evaluation.datasets.runner import METRICS, refused

CONFIDENCE = 0.95
DEFAULT_TOLERANCE = 0.05


@dataclass(frozen=True)
class Interval:
    """A mean with its t-based confidence interval; no interval under two values."""

    n: int
    mean: float | None
    low: float | None
    high: float | None


def mean_interval(values: Iterable[float], confidence: float = CONFIDENCE) -> Interval:
    """Student's t interval for the mean, clipped to the 0-1 range every score lives in.

    t rather than a bootstrap: results are deterministic and match a hand calculation; with
    tens of items per dataset the t interval is the textbook choice for a mean.
    """
    data = list(values)
    n = len(data)
    if n == 0:
        return Interval(0, None, None, None)
    mean = statistics.fmean(data)
    if n < 2:
        return Interval(n, mean, None, None)
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * statistics.stdev(data) / math.sqrt(n)
    return Interval(n, mean, max(0.0, mean - half), min(1.0, mean + half))


@dataclass(frozen=True)
class ScoreComparison:
    label: str
    is_metric: bool
    a: Interval
    b: Interval
    shared: int  # items both experiments scored on this label
    wins: int  # B higher than A by more than the tolerance
    losses: int
    ties: int

    @property
    def difference(self) -> float | None:
        if self.a.mean is None or self.b.mean is None:
            return None
        return self.b.mean - self.a.mean


@dataclass
class ChangedItem:
    item_id: int
    question: str
    a: ExperimentResult
    b: ExperimentResult
    # label -> (A's score, B's score) for the scores that moved by more than the tolerance
    moved: dict[str, tuple[float, float]] = field(default_factory=dict)
    refused_a: bool = False
    refused_b: bool = False

    @property
    def refusal_changed(self) -> bool:
        return self.refused_a != self.refused_b


@dataclass
class Comparison:
    scores: list[ScoreComparison]
    shared_items: int
    only_a: int
    only_b: int
    changed: list[ChangedItem]
    tolerance: float


def _score(result: ExperimentResult, label: str) -> float | None:
    value = (result.scores or {}).get(label)
    return None if value is None else float(value)


def _labels(results: Iterable[ExperimentResult]) -> list[str]:
    found = {label for r in results for label in (r.scores or {})}
    judges = sorted(found - set(METRICS))
    return judges + [m for m in METRICS if m in found]


def compare(
    results_a: list[ExperimentResult],
    results_b: list[ExperimentResult],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Comparison:
    by_item_a = {r.item_id: r for r in results_a}
    by_item_b = {r.item_id: r for r in results_b}
    shared = sorted(by_item_a.keys() & by_item_b.keys())
    labels = _labels([*results_a, *results_b])
    comparisons = []
    for label in labels:
        wins = losses = ties = 0
        for item_id in shared:
            a, b = _score(by_item_a[item_id], label), _score(by_item_b[item_id], label)
            if a is None or b is None:
                continue
            if b - a > tolerance:
                wins += 1
            elif a - b > tolerance:
                losses += 1
            else:
                ties += 1
        comparisons.append(
            ScoreComparison(
                label=label,
                is_metric=label in METRICS,
                a=mean_interval(v for r in results_a if (v := _score(r, label)) is not None),
                b=mean_interval(v for r in results_b if (v := _score(r, label)) is not None),
                shared=wins + losses + ties,
                wins=wins,
                losses=losses,
                ties=ties,
            )
        )
    changed = [
        change
        for item_id in shared
        if (change := _change(by_item_a[item_id], by_item_b[item_id], labels, tolerance))
    ]
    return Comparison(
        scores=comparisons,
        shared_items=len(shared),
        only_a=len(by_item_a) - len(shared),
        only_b=len(by_item_b) - len(shared),
        changed=changed,
        tolerance=tolerance,
    )


def _change(
    a: ExperimentResult, b: ExperimentResult, labels: list[str], tolerance: float
) -> ChangedItem | None:
    moved: dict[str, tuple[float, float]] = {}
    for label in labels:
        score_a, score_b = _score(a, label), _score(b, label)
        if score_a is not None and score_b is not None and abs(score_b - score_a) > tolerance:
            moved[label] = (score_a, score_b)
    refused_a, refused_b = refused(a), refused(b)
    errored = bool(a.error) != bool(b.error)
    if not moved and refused_a == refused_b and not errored:
        return None
    return ChangedItem(
        item_id=a.item_id,
        question=a.item.question,
        a=a,
        b=b,
        moved=moved,
        refused_a=refused_a,
        refused_b=refused_b,
    )
