"""The arithmetic of an A/B test's comparison: intervals, differences against the control, a
verdict in words and how many turns a verdict needs. Pure functions over counts and arrays; what
is counted is `evaluation.abtests.services.abtest_results`.

- A rate's 95% interval is Wilson's (`scipy.stats.binomtest(...).proportion_ci`), which stays
  inside 0-100% and behaves on small counts where the normal one does not.
- A difference of two rates uses Newcombe's method (the two Wilson intervals combined), a
  difference of two means Welch's t-interval; "better"/"worse" only when the interval leaves
  out zero, otherwise "no clear difference".
- A mean's interval is the t-interval; a median's a percentile bootstrap (fixed seed: the page
  shows the same numbers on every load).
- The sample size to detect a 5-point absolute change from the control's rate at alpha 0.05
  (two-sided) and 80% power, by the normal approximation for two proportions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.05
POWER = 0.80
DETECT = 0.05  # the absolute change (5 points) the sample-size note is about
FLOOR = 30  # fewer per variant than this: "too early to call"
BOOTSTRAP_RESAMPLES = 2000

Direction = Literal["higher", "lower"]
BETTER, WORSE, UNCLEAR, EARLY = "better", "worse", "no clear difference", "too early to call"


@dataclass(frozen=True)
class Rate:
    k: int
    n: int
    value: float | None  # k / n; None without a single case
    low: float | None
    high: float | None

    @property
    def text(self) -> str:
        """As the page shows it: "62% (55-69%)", with an en dash."""
        if self.value is None or self.low is None or self.high is None:
            return "—"
        return f"{self.value:.0%} ({self.low * 100:.0f}–{self.high:.0%})"


def wilson(k: int, n: int) -> Rate:
    if n <= 0:
        return Rate(k, 0, None, None, None)
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return Rate(k, n, k / n, float(ci.low), float(ci.high))


@dataclass(frozen=True)
class Estimate:
    """A mean or a median with its interval, over `n` values."""

    n: int
    value: float | None
    low: float | None
    high: float | None

    def text(self, unit: str) -> str:
        """E.g. "1,240 ms (1,100-1,380)" or "$0.0012 (0.0010-0.0014)", with an en dash."""
        if self.value is None:
            return "—"
        number = _number(self.value, unit)
        if self.low is None or self.high is None:
            return number
        low, high = _number(self.low, unit, bare=True), _number(self.high, unit, bare=True)
        return f"{number} ({low}–{high})"


def _number(value: float, unit: str, *, bare: bool = False) -> str:
    if unit == "$":
        return f"{value:.4f}" if bare else f"${value:.4f}"
    return f"{value:,.0f}" if bare else f"{value:,.0f} {unit}"


def mean_ci(n: int, mean: float | None, sd: float | None) -> Estimate:
    """The t-interval from a sample's size, mean and (sample) standard deviation."""
    if n <= 0 or mean is None:
        return Estimate(n, None, None, None)
    if n < 2 or sd is None:
        return Estimate(n, mean, None, None)
    half = float(stats.t.ppf(1 - ALPHA / 2, n - 1)) * sd / math.sqrt(n)
    return Estimate(n, mean, mean - half, mean + half)


def median_ci(values: list[float]) -> Estimate:
    """The median with a percentile-bootstrap interval; none below two values or when all are
    equal (nothing to resample)."""
    n = len(values)
    if n == 0:
        return Estimate(0, None, None, None)
    array = np.asarray(values, dtype=float)
    median = float(np.median(array))
    if n < 2 or float(array.min()) == float(array.max()):
        return Estimate(n, median, None, None)
    result = stats.bootstrap(
        (array,),
        np.median,
        confidence_level=CONFIDENCE,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        random_state=np.random.default_rng(0),
    )
    ci = result.confidence_interval
    return Estimate(n, median, float(ci.low), float(ci.high))


@dataclass(frozen=True)
class Difference:
    """A variant minus the control, with its interval and what it means."""

    value: float | None
    low: float | None
    high: float | None
    verdict: str

    def text(self, unit: str) -> str:
        """Signed, in points for rates ("+4.1 pts (-1.0 to +9.2)", with minus signs), else in the unit."""
        if self.value is None:
            return "—"

        def signed(x: float) -> str:
            if unit == "pts":
                return f"{x * 100:+.1f}".replace("-", "−")
            if unit == "$":
                return f"{x:+.4f}".replace("-", "−")
            return f"{x:+,.0f}".replace("-", "−")

        suffix = "" if unit == "$" else f" {unit}"  # dollars are plain: "-0.0008 (...)"
        if self.low is None or self.high is None:
            return f"{signed(self.value)}{suffix}"
        return f"{signed(self.value)}{suffix} ({signed(self.low)} to {signed(self.high)})"


def _verdict(low: float, high: float, better_when: Direction) -> str:
    if low > 0:
        return BETTER if better_when == "higher" else WORSE
    if high < 0:
        return WORSE if better_when == "higher" else BETTER
    return UNCLEAR


def rate_difference(
    variant: Rate, control: Rate, *, better_when: Direction, floor: int = FLOOR
) -> Difference:
    """Newcombe's hybrid score interval for p(variant) - p(control)."""
    if variant.value is None or control.value is None:
        return Difference(None, None, None, EARLY)
    assert variant.low is not None and variant.high is not None
    assert control.low is not None and control.high is not None
    d = variant.value - control.value
    low = d - math.sqrt((variant.value - variant.low) ** 2 + (control.high - control.value) ** 2)
    high = d + math.sqrt((variant.high - variant.value) ** 2 + (control.value - control.low) ** 2)
    if min(variant.n, control.n) < floor:
        return Difference(d, low, high, EARLY)
    return Difference(d, low, high, _verdict(low, high, better_when))


def mean_difference(
    variant: tuple[int, float | None, float | None],
    control: tuple[int, float | None, float | None],
    *,
    better_when: Direction,
    floor: int = FLOOR,
) -> Difference:
    """Welch's t-interval for mean(variant) - mean(control), each given as (n, mean, sd)."""
    (n1, m1, s1), (n2, m2, s2) = variant, control
    if m1 is None or m2 is None:
        return Difference(None, None, None, EARLY)
    d = m1 - m2
    if n1 < 2 or n2 < 2 or s1 is None or s2 is None:
        return Difference(d, None, None, EARLY)
    v1, v2 = s1 * s1 / n1, s2 * s2 / n2
    se = math.sqrt(v1 + v2)
    if se == 0:
        verdict = UNCLEAR if d == 0 else _verdict(d, d, better_when)
        return Difference(d, d, d, EARLY if min(n1, n2) < floor else verdict)
    df = (v1 + v2) ** 2 / ((v1 * v1 / (n1 - 1)) + (v2 * v2 / (n2 - 1)) or 1e-300)
    half = float(stats.t.ppf(1 - ALPHA / 2, df)) * se
    low, high = d - half, d + half
    if min(n1, n2) < floor:
        return Difference(d, low, high, EARLY)
    return Difference(d, low, high, _verdict(low, high, better_when))


def sample_size(p_control: float, *, detect: float = DETECT) -> int:
    """Turns per variant to detect an absolute change of `detect` from `p_control` (two-sided
    alpha 0.05, power 0.8): n = (z_a sqrt(2 p q) + z_b sqrt(p1 q1 + p2 q2))^2 / detect^2, with
    p the two rates' mean. The change is taken upwards unless that would pass 100%."""
    p1 = min(max(p_control, 0.0), 1.0)
    p2 = p1 + detect if p1 + detect <= 1 else p1 - detect
    mean = (p1 + p2) / 2
    z_a = float(stats.norm.ppf(1 - ALPHA / 2))
    z_b = float(stats.norm.ppf(POWER))
    root = z_a * math.sqrt(2 * mean * (1 - mean)) + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return math.ceil(root * root / (detect * detect))
