"""A/B tests in evaluation: the statistics against hand-computed values, what the comparison
leaves out (replays, cache hits, unfinished turns), and the lifecycle's refusals. Real Postgres;
the turns are written as the turn loop would have left them."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User

from chatbot.chat import services as chat
from chatbot.models import (
    ABTest,
    ABVariant,
    Escalation,
    Feedback,
    Judge,
    JudgeScore,
    ModelEndpoint,
    PromptVersion,
    Turn,
)
from evaluation.abtests import stats
from evaluation.abtests.services import (
    ABTestError,
    VariantSpec,
    abtest_results,
    abtest_save,
    abtest_start,
    abtest_stop,
)
from evaluation.services import judges_ensure

Z = 1.959963984540054


def _hand_wilson(k: int, n: int) -> tuple[float, float]:
    p = k / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    return centre - half, centre + half


# --- the arithmetic -------------------------------------------------------------------------


def test_wilson_interval_matches_the_formula() -> None:
    rate = stats.wilson(3, 10)
    low, high = _hand_wilson(3, 10)
    assert rate.value == 0.3
    assert rate.low == pytest.approx(low, abs=1e-9) and rate.low == pytest.approx(0.1078, abs=1e-4)
    assert rate.high == pytest.approx(high, abs=1e-9) and rate.high == pytest.approx(
        0.6032, abs=1e-4
    )
    assert rate.text == "30% (11–60%)"
    assert stats.wilson(0, 0).value is None and stats.wilson(0, 0).text == "—"


def test_sample_size_for_a_five_point_change() -> None:
    # 50% -> 55%, alpha 0.05 two-sided, power 0.8: the textbook 1,565 per group.
    assert stats.sample_size(0.5) == 1565
    # Near 100% the change is taken downwards: 98% against 93%, the same pair as from 93%.
    assert stats.sample_size(0.98) == stats.sample_size(0.93) > 0


def test_differences_and_verdicts() -> None:
    many_up, many_down = stats.wilson(180, 200), stats.wilson(100, 200)
    better = stats.rate_difference(many_up, many_down, better_when="higher")
    assert better.value == pytest.approx(0.4) and better.low is not None and better.low > 0
    assert better.verdict == "better"
    assert stats.rate_difference(many_up, many_down, better_when="lower").verdict == "worse"
    same = stats.rate_difference(stats.wilson(50, 100), stats.wilson(52, 100), better_when="higher")
    assert same.verdict == "no clear difference"
    few = stats.rate_difference(stats.wilson(9, 10), stats.wilson(1, 10), better_when="higher")
    assert few.verdict == "too early to call" and few.low is not None

    # Welch: 40 turns at 100 ms (sd 10) against 40 at 200 ms (sd 10): clearly faster.
    faster = stats.mean_difference((40, 100.0, 10.0), (40, 200.0, 10.0), better_when="lower")
    half = (
        stats.stats.t.ppf(0.975, 78) * math.sqrt(10 * 10 / 40 + 10 * 10 / 40)  # equal sd: df 78
    )
    assert faster.value == -100 and faster.verdict == "better"
    assert faster.low == pytest.approx(-100 - half) and faster.high == pytest.approx(-100 + half)

    mean = stats.mean_ci(4, 10.0, 2.0)
    t = stats.stats.t.ppf(0.975, 3)
    assert mean.low == pytest.approx(10 - t * 1.0) and mean.high == pytest.approx(10 + t * 1.0)


# --- what is counted ------------------------------------------------------------------------


def _test_with_variants() -> tuple[ABTest, ABVariant, ABVariant]:
    test = ABTest.objects.create(name="Prompt v2", status=ABTest.Status.RUNNING)
    control = ABVariant.objects.create(test=test, name="Control", is_control=True, weight=50)
    challenger = ABVariant.objects.create(test=test, name="v2", weight=50, position=1)
    return test, control, challenger


def _turn(owner: User, variant: ABVariant, **fields: Any) -> Turn:
    conversation = chat.conversation_create(owner=owner, is_replay=fields.pop("replay", False))
    turn = chat.turn_create(conversation=conversation, user_text="A question?")
    values: dict[str, Any] = {
        "status": Turn.Status.DONE,
        "ab_variant": variant,
        "answer": "An answer.",
        "total_ms": 1000.0,
        "ttft_ms": 200.0,
        "cost": Decimal("0.002"),
    }
    values.update(fields)
    Turn.objects.filter(pk=turn.pk).update(**values)
    return Turn.objects.get(pk=turn.pk)


def test_results_count_rates_and_leave_out_replays_cache_hits_and_unfinished(
    alice: User, rita: User, django_assert_num_queries: Any
) -> None:
    test, control, challenger = _test_with_variants()
    judges_ensure()
    judge_a, judge_b = Judge.objects.order_by("pk")[:2]

    # Control: 4 counted turns, by two people.
    c = [_turn(alice, control, total_ms=ms, ttft_ms=ms / 5) for ms in (1000.0, 1200.0, 800.0)]
    c.append(_turn(rita, control, no_answer=True, total_ms=600.0, ttft_ms=None))
    Feedback.objects.create(turn=c[0], user=alice, rating=Feedback.Rating.UP)
    Feedback.objects.create(turn=c[1], user=alice, rating=Feedback.Rating.DOWN)
    Escalation.objects.create(turn=c[1], requested_by=alice, reason="wrong")
    # c[0] passes both judges; c[2] fails one of two; c[3] has a failed-to-run score only.
    for judge in (judge_a, judge_b):
        JudgeScore.objects.create(turn=c[0], judge=judge, passed=True, status="done")
    JudgeScore.objects.create(turn=c[2], judge=judge_a, passed=True, status="done")
    JudgeScore.objects.create(turn=c[2], judge=judge_b, passed=False, status="done")
    JudgeScore.objects.create(turn=c[3], judge=judge_a, passed=None, status="failed")

    # Challenger: 2 counted turns; the rest are left out.
    v = [_turn(alice, challenger, cost=Decimal("0.004")) for _ in range(2)]
    Feedback.objects.create(turn=v[0], user=alice, rating=Feedback.Rating.UP)
    left_out = [
        _turn(alice, challenger, replay=True, is_replay=True),
        _turn(alice, challenger, cache_result=Turn.Cache.EXACT, cost=Decimal(0)),
        _turn(alice, challenger, cache_result=Turn.Cache.SEMANTIC, cost=Decimal(0)),
        _turn(alice, challenger, status=Turn.Status.FAILED),
        _turn(alice, challenger, status=Turn.Status.STREAMING),
    ]
    for turn in left_out:
        Feedback.objects.create(turn=turn, user=alice, rating=Feedback.Rating.DOWN)
    # A turn outside any test counts for nothing.
    other = chat.turn_create(conversation=chat.conversation_create(owner=alice), user_text="x")
    Turn.objects.filter(pk=other.pk).update(status=Turn.Status.DONE)

    with django_assert_num_queries(3):  # the variants, the aggregates, the latency samples
        results = abtest_results(test)

    base, challenged = results.variants
    assert (base.variant, challenged.variant) == (control, challenger)
    assert (base.turns, base.people, challenged.turns, challenged.people) == (4, 2, 2, 1)
    rates = {r.key: r.rate for r in base.rates}
    assert (rates["thumbs"].k, rates["thumbs"].n) == (1, 2)
    assert (rates["judges"].k, rates["judges"].n) == (1, 2)
    assert (rates["escalation"].k, rates["escalation"].n) == (1, 4)
    assert (rates["no_answer"].k, rates["no_answer"].n) == (1, 4)
    low, high = _hand_wilson(1, 4)
    assert rates["escalation"].low == pytest.approx(low) and rates[
        "escalation"
    ].high == pytest.approx(high)
    theirs = {r.key: r.rate for r in challenged.rates}
    assert (theirs["thumbs"].k, theirs["thumbs"].n) == (1, 1), "left-out turns' thumbs not counted"
    assert theirs["judges"].n == 0 and theirs["judges"].value is None

    means = {m.key: m for m in base.means}
    assert means["total_ms"].mean.value == pytest.approx(900.0)
    assert means["total_ms"].mean.n == 4
    assert means["ttft_ms"].mean.n == 3 and means["ttft_ms"].mean.value == pytest.approx(200.0)
    assert means["total_ms"].median is not None and means["total_ms"].median.value == 900.0
    sd = stats.stats.tstd([1000.0, 1200.0, 800.0, 600.0])
    t = stats.stats.t.ppf(0.975, 3)
    assert means["total_ms"].mean.low == pytest.approx(900 - t * sd / 2)
    cost = {m.key: m for m in challenged.means}["cost"]
    assert cost.mean.value == pytest.approx(0.004), "cache hits' zero cost left out"
    assert cost.difference is not None and cost.difference.value == pytest.approx(0.002)

    assert results.too_early
    difference = {r.key: r for r in challenged.rates}["thumbs"]
    assert difference.difference is not None
    assert difference.difference.verdict == "too early to call"
    assert difference.difference.value == pytest.approx(0.5)
    # The control's thumbs-up rate is 50%: 1,565 per variant, the challenger has 1 rated turn.
    assert difference.needed == 1565 and difference.more == 1564
    assert {r.key: r for r in base.rates}["thumbs"].difference is None


def test_results_with_no_turns_say_nothing_yet(db) -> None:
    test, _, _ = _test_with_variants()
    results = abtest_results(test)
    assert results.too_early
    for variant in results.variants:
        assert variant.turns == 0
        assert all(r.rate.value is None and r.needed is None for r in variant.rates)
        assert all(m.mean.value is None for m in variant.means)


# --- the lifecycle --------------------------------------------------------------------------


def _endpoint(name: str, *, enabled: bool = True) -> ModelEndpoint:
    return ModelEndpoint.objects.create(
        name=name, provider=ModelEndpoint.Provider.FAKE, model_id="fake-list-chat", enabled=enabled
    )


def _specs(**challenger: Any) -> list[VariantSpec]:
    return [
        VariantSpec(name="Control", weight=50, is_control=True),
        VariantSpec(name="Challenger", weight=50, **challenger),
    ]


def test_a_draft_is_checked_when_saved(adam: User) -> None:
    def refused(variants: list[VariantSpec]) -> str:
        with pytest.raises(ABTestError) as caught:
            abtest_save(test=None, name="T", variants=variants, user=adam)
        return str(caught.value)

    assert "at least two" in refused([VariantSpec(name="Only", weight=100, is_control=True)])
    assert "add up to 100" in refused(
        [VariantSpec(name="A", weight=50, is_control=True), VariantSpec(name="B", weight=40)]
    )
    assert "Exactly one" in refused(
        [VariantSpec(name="A", weight=50), VariantSpec(name="B", weight=50)]
    )
    assert "must differ" in refused(
        [VariantSpec(name="A", weight=50, is_control=True), VariantSpec(name=" a ", weight=50)]
    )
    assert "disabled" in refused(_specs(endpoint=_endpoint("off-model", enabled=False)))
    retired = PromptVersion.objects.create(
        kind=PromptVersion.Kind.SYSTEM, number=90, text="Old.", status=PromptVersion.Status.RETIRED
    )
    assert "retired" in refused(_specs(prompt_version=retired))
    assert "cannot be overridden" in refused(_specs(retrieval={"max_steps": 2}))
    assert "control" in refused(
        [
            VariantSpec(name="A", weight=50, is_control=True, retrieval={"retrieval_k": 3}),
            VariantSpec(name="B", weight=50),
        ]
    )
    assert not ABTest.objects.exists()

    test = abtest_save(
        test=None, name="Bigger k", variants=_specs(retrieval={"retrieval_k": 8}), user=adam
    )
    assert [(v.name, v.weight, v.is_control) for v in test.variants.all()] == [
        ("Control", 50, True),
        ("Challenger", 50, False),
    ]
    abtest_save(
        test=test,
        name="Bigger k",
        variants=[
            VariantSpec(name="Control", weight=34, is_control=True),
            VariantSpec(name="k8", weight=33, retrieval={"retrieval_k": 8}),
            VariantSpec(name="k12", weight=33, retrieval={"retrieval_k": 12}),
        ],
    )
    assert test.variants.count() == 3


def test_one_test_runs_at_a_time(adam: User) -> None:
    first = abtest_save(test=None, name="First", variants=_specs(), user=adam)
    second = abtest_save(test=None, name="Second", variants=_specs(), user=adam)
    abtest_start(test=first)

    with pytest.raises(ABTestError, match="“First” is running"):
        abtest_start(test=second)
    with pytest.raises(ABTestError, match="only a draft can be edited"):
        abtest_save(test=first, name="First", variants=_specs())

    abtest_stop(test=first)
    abtest_stop(test=first)  # twice: nothing more
    abtest_start(test=second)
    first.refresh_from_db()
    assert first.status == ABTest.Status.STOPPED and first.stopped_at is not None
    assert ABTest.objects.get(status=ABTest.Status.RUNNING) == second
    with pytest.raises(ABTestError, match="only a draft can be started"):
        abtest_start(test=first)


def test_a_model_disabled_after_the_save_stops_the_start(adam: User) -> None:
    model = _endpoint("challenger-model")
    test = abtest_save(test=None, name="Models", variants=_specs(endpoint=model), user=adam)
    ModelEndpoint.objects.filter(pk=model.pk).update(enabled=False)
    with pytest.raises(ABTestError, match="disabled"):
        abtest_start(test=test)
    test.refresh_from_db()
    assert test.status == ABTest.Status.DRAFT
