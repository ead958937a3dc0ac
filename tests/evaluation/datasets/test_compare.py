"""Comparing two experiments on hand-made results: the confidence intervals are checked against a
hand calculation (t table value), and wins / losses / ties and changed items item by item."""

from __future__ import annotations

import math

import pytest

from chatbot.models import DatasetItem, ExperimentResult
from evaluation.datasets.compare import compare, mean_interval

# Student's t for 95% two-sided with 4 degrees of freedom, from a printed table.
T_975_4DF = 2.776445


def result(item_id: int, answer: str = "Tray 2.", *, no_answer: bool = False, error: str = "",
           **scores: float | None) -> ExperimentResult:  # fmt: skip
    item = DatasetItem(pk=item_id, question=f"Question {item_id}?", added_in=1)
    return ExperimentResult(
        item=item, answer=answer, no_answer=no_answer, error=error, scores=scores
    )


F1_A = [0.6, 0.7, 0.8, 0.9, 0.5]
F1_B = [0.6, 0.9, 0.8, 0.6, 0.5]
FORMAT_A = [1.0, None, 1.0, 1.0, 1.0]
FORMAT_B = [1.0, 0.0, 1.0, 1.0, None]


def experiments() -> tuple[list[ExperimentResult], list[ExperimentResult]]:
    a = [
        result(n, token_f1=f1, format=fmt)
        for n, (f1, fmt) in enumerate(zip(F1_A, FORMAT_A, strict=True), start=1)
    ]
    b = [
        result(n, token_f1=f1, format=fmt)
        for n, (f1, fmt) in enumerate(zip(F1_B, FORMAT_B, strict=True), start=1)
    ]
    # Item 3 scores the same in B, but B refused it.
    b[2].no_answer, b[2].answer = True, "I don't know."
    b.append(result(6))  # an item only B ran (a later dataset version)
    return a, b


def test_it_gives_a_t_interval_for_the_mean() -> None:
    interval = mean_interval(F1_A)

    # mean 0.7; sample sd sqrt(0.1 / 4); half width t * sd / sqrt(5)
    half = T_975_4DF * math.sqrt(0.1 / 4) / math.sqrt(5)
    assert interval.n == 5
    assert interval.mean == pytest.approx(0.7)
    assert interval.low == pytest.approx(0.7 - half, abs=1e-6)
    assert interval.high == pytest.approx(0.7 + half, abs=1e-6)
    assert interval.low == pytest.approx(0.503676, abs=1e-6)


def test_it_clips_the_interval_to_the_score_range_and_needs_two_values() -> None:
    wide = mean_interval([0.0, 1.0, 1.0])
    assert wide.low == 0.0 and wide.high == 1.0
    single = mean_interval([0.4])
    assert (single.n, single.mean, single.low, single.high) == (1, 0.4, None, None)
    assert mean_interval([]).mean is None


def test_it_counts_wins_losses_and_ties_over_shared_items() -> None:
    a, b = experiments()

    comparison = compare(a, b, tolerance=0.05)

    assert (comparison.shared_items, comparison.only_a, comparison.only_b) == (5, 0, 1)
    by_label = {s.label: s for s in comparison.scores}
    assert list(by_label) == ["format", "token_f1"]  # judges first, then reference metrics
    f1 = by_label["token_f1"]
    assert (f1.wins, f1.losses, f1.ties, f1.shared) == (1, 1, 3, 5)
    assert f1.is_metric and f1.a.mean == pytest.approx(0.7) and f1.b.mean == pytest.approx(0.68)
    assert f1.difference == pytest.approx(-0.02)
    fmt = by_label["format"]
    # Only items both scored count: item 2 (A failed) and item 5 (B failed) are left out.
    assert (fmt.wins, fmt.losses, fmt.ties, fmt.shared) == (0, 0, 3, 3)
    assert (fmt.a.n, fmt.a.mean, fmt.a.low, fmt.a.high) == (4, 1.0, 1.0, 1.0)
    assert not fmt.is_metric


def test_it_lists_the_items_that_moved_or_changed_refusal() -> None:
    a, b = experiments()

    changed = {c.item_id: c for c in compare(a, b, tolerance=0.05).changed}

    assert sorted(changed) == [2, 3, 4]
    assert changed[2].moved == {"token_f1": (0.7, 0.9)}
    assert changed[4].moved == {"token_f1": (0.9, 0.6)}
    assert changed[3].moved == {} and changed[3].refusal_changed and changed[3].refused_b
    assert changed[2].question == "Question 2?"


def test_it_widens_ties_with_the_tolerance() -> None:
    a, b = experiments()

    f1 = {s.label: s for s in compare(a, b, tolerance=0.25).scores}["token_f1"]

    assert (f1.wins, f1.losses, f1.ties) == (0, 1, 4)
