"""A/B tests: the lifecycle (define a draft, start, stop, record the promoted winner) and the
comparison of the variants over the turns they answered.

What is compared: the turns a variant answered (`Turn.ab_variant`, set by the turn loop, see
`chatbot.agent.abtest`) that finished ("done"), leaving out replays and answer-cache hits (a hit
repeats an earlier answer without asking the model: its latency and cost say nothing about the
variant). Promotion itself (the default endpoint, publishing the prompt, saving the settings) is
the console's, where those services live: `chatbot.console.abtests.abtest_promote`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Avg, Count, Exists, F, OuterRef, Q, StdDev, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from chatbot.agent.abtest import retrieval_errors
from chatbot.models import (
    ABTest,
    ABVariant,
    Escalation,
    Feedback,
    JudgeScore,
    ModelEndpoint,
    PromptVersion,
    Turn,
)
from chatbot.telemetry.audit import audit_record
from evaluation.abtests import stats

# The per-turn latencies and costs read for the medians' bootstrap, per variant (the newest).
SAMPLE_CAP = 5000


class ABTestError(Exception):
    """A refused change, said in words for the admin."""


# --- the lifecycle ---------------------------------------------------------------------------


@dataclass
class VariantSpec:
    """One variant as the admin defines it."""

    name: str
    weight: int
    is_control: bool = False
    endpoint: ModelEndpoint | None = None
    prompt_version: PromptVersion | None = None
    retrieval: dict[str, Any] = field(default_factory=dict)


def variants_errors(variants: list[VariantSpec]) -> list[str]:
    """Why a set of variants cannot make a test, in words; [] when it can."""
    errors = []
    if len(variants) < 2:
        errors.append("A test needs at least two variants.")
    controls = sum(1 for v in variants if v.is_control)
    if controls != 1:
        errors.append(f"Exactly one variant must be the control ({controls} are).")
    if sum(v.weight for v in variants) != 100:
        errors.append(
            f"The weights must add up to 100% (they add up to {sum(v.weight for v in variants)}%)."
        )
    names = [v.name.strip().casefold() for v in variants]
    if any(not name for name in names):
        errors.append("Every variant needs a name.")
    elif len(set(names)) != len(names):
        errors.append("Variant names must differ.")
    for v in variants:
        if v.weight < 1 or v.weight > 100:
            errors.append(f"“{v.name}”: a weight runs from 1 to 100%.")
        if v.is_control and (v.endpoint or v.prompt_version or v.retrieval):
            errors.append(
                f"“{v.name}” is the control: it answers as production does today, so its "
                "endpoint, prompt version and retrieval overrides stay blank."
            )
        if v.endpoint is not None and not v.endpoint.enabled:
            errors.append(f"“{v.name}”: the model “{v.endpoint.name}” is disabled.")
        version = v.prompt_version
        if version is not None and version.kind != PromptVersion.Kind.SYSTEM:
            errors.append(f"“{v.name}”: v{version.number} is not a system prompt.")
        elif version is not None and version.status == PromptVersion.Status.RETIRED:
            errors.append(
                f"“{v.name}”: prompt v{version.number} is retired; choose a draft "
                "or the published version."
            )
        errors += [f"“{v.name}”: {e}" for e in retrieval_errors(v.retrieval)]
    return errors


@transaction.atomic
def abtest_save(
    *,
    test: ABTest | None,
    name: str,
    description: str = "",
    variants: list[VariantSpec],
    user: User | None = None,
) -> ABTest:
    """Create a draft or replace a draft's definition (its variants are written afresh: a draft
    has answered nothing). A started test cannot be edited: its numbers would mean two things."""
    if test is not None and test.status != ABTest.Status.DRAFT:
        raise ABTestError(f"“{test.name}” is {test.status}: only a draft can be edited.")
    errors = variants_errors(variants)
    if not name.strip():
        errors.insert(0, "The test needs a name.")
    if errors:
        raise ABTestError(" ".join(errors))
    if test is None:
        test = ABTest.objects.create(
            name=name.strip(), description=description.strip(), created_by=user
        )
    else:
        test.name, test.description = name.strip(), description.strip()
        test.save(update_fields=["name", "description"])
        test.variants.all().delete()
    ABVariant.objects.bulk_create(
        ABVariant(
            test=test,
            name=v.name.strip(),
            is_control=v.is_control,
            weight=v.weight,
            endpoint=v.endpoint,
            prompt_version=v.prompt_version,
            retrieval=v.retrieval,
            position=position,
        )
        for position, v in enumerate(variants)
    )
    audit_record(
        "ab_test.save",
        target=test,
        details={"variants": [(v.name, v.weight) for v in variants]},
        actor=user,
    )
    return test


def _specs(test: ABTest) -> list[VariantSpec]:
    return [
        VariantSpec(
            name=v.name,
            weight=v.weight,
            is_control=v.is_control,
            endpoint=v.endpoint,
            prompt_version=v.prompt_version,
            retrieval=v.retrieval,
        )
        for v in test.variants.select_related("endpoint", "prompt_version")
    ]


def abtest_start(*, test: ABTest) -> ABTest:
    """Send live traffic to the draft's variants. One test runs at a time (a partial unique
    index, so two admins starting two tests at once cannot both succeed); the variants are
    checked again, since a model may have been disabled or a prompt retired since the save."""
    if test.status != ABTest.Status.DRAFT:
        raise ABTestError(f"“{test.name}” is {test.status}; only a draft can be started.")
    errors = variants_errors(_specs(test))
    if errors:
        raise ABTestError(" ".join(errors))
    running = ABTest.objects.filter(status=ABTest.Status.RUNNING).exclude(pk=test.pk).first()
    if running is not None:
        raise ABTestError(f"“{running.name}” is running: stop it before starting another test.")
    test.status, test.started_at = ABTest.Status.RUNNING, timezone.now()
    try:
        with transaction.atomic():
            test.save(update_fields=["status", "started_at"])
            audit_record("ab_test.start", target=test)
    except IntegrityError:
        test.status, test.started_at = ABTest.Status.DRAFT, None
        raise ABTestError("Another test was started meanwhile: stop it first.") from None
    return test


def abtest_stop(*, test: ABTest) -> ABTest:
    """Stop sending traffic: from the next turn everyone is answered as production is. Stopping
    a stopped test changes nothing."""
    if test.status == ABTest.Status.DRAFT:
        raise ABTestError(f"“{test.name}” has not started.")
    if test.status == ABTest.Status.RUNNING:
        test.status, test.stopped_at = ABTest.Status.STOPPED, timezone.now()
        with transaction.atomic():
            test.save(update_fields=["status", "stopped_at"])
            audit_record("ab_test.stop", target=test)
    return test


def abtest_mark_promoted(*, test: ABTest, variant: ABVariant, user: User | None) -> None:
    """Record the winner, once (the console promotes, then calls this in the same
    transaction)."""
    test.winner, test.promoted_at, test.promoted_by = variant, timezone.now(), user
    test.save(update_fields=["winner", "promoted_at", "promoted_by"])
    audit_record(
        "ab_test.promote",
        target=test,
        details={"variant": variant.name, "variant_id": variant.pk},
        actor=user,
    )


# --- the comparison --------------------------------------------------------------------------


def compared_turns(test: ABTest) -> Any:
    """The turns a comparison counts (see the module's docstring)."""
    return Turn.objects.filter(
        ab_variant__test=test,
        status=Turn.Status.DONE,
        is_replay=False,
        conversation__is_replay=False,
    ).exclude(cache_result__in=[Turn.Cache.EXACT, Turn.Cache.SEMANTIC])


@dataclass(frozen=True)
class RateRow:
    label: str
    key: str
    better_when: stats.Direction
    rate: stats.Rate
    difference: stats.Difference | None  # None for the control
    needed: int | None = None  # per variant, to detect a 5-point change from the control
    more: int | None = None  # how many more this variant needs for that

    @property
    def difference_text(self) -> str:
        return self.difference.text("pts") if self.difference else ""


@dataclass(frozen=True)
class MeanRow:
    label: str
    key: str
    unit: str
    mean: stats.Estimate
    median: stats.Estimate | None
    difference: stats.Difference | None

    @property
    def mean_text(self) -> str:
        return self.mean.text(self.unit)

    @property
    def median_text(self) -> str:
        return self.median.text(self.unit) if self.median else ""

    @property
    def difference_text(self) -> str:
        return self.difference.text(self.unit) if self.difference else ""


@dataclass
class VariantResult:
    variant: ABVariant
    turns: int = 0
    people: int = 0
    rates: list[RateRow] = field(default_factory=list)
    means: list[MeanRow] = field(default_factory=list)


@dataclass
class Results:
    variants: list[VariantResult]
    too_early: bool  # some variant has fewer turns than the floor
    floor: int = stats.FLOOR
    detect_points: int = round(stats.DETECT * 100)


# (label, key, numerator, denominator, better when)
_RATES: tuple[tuple[str, str, str, str, stats.Direction], ...] = (
    ("Thumbs up", "thumbs", "thumbs_up", "rated", "higher"),
    ("Judges passed", "judges", "judge_passed", "judged", "higher"),
    ("Escalated", "escalation", "escalated", "turns", "lower"),
    ("No answer", "no_answer", "no_answers", "turns", "lower"),
)
# (label, key, field, unit, with a median)
_MEANS = (
    ("Latency (total)", "total_ms", "total_ms", "ms", True),
    ("Time to first token", "ttft_ms", "ttft_ms", "ms", True),
    ("Cost per turn", "cost", "cost", "$", False),
)


def _aggregates(test: ABTest) -> dict[int, dict[str, Any]]:
    """One query: per variant, the counts and the means and spreads."""
    feedback = Feedback.objects.filter(turn=OuterRef("pk"))
    scores = JudgeScore.objects.filter(
        turn=OuterRef("pk"), status=JudgeScore.Status.DONE, passed__isnull=False
    )
    turns = compared_turns(test).annotate(
        # A turn's rating: rated at all, and up with nobody saying down.
        f_rated=Exists(feedback),
        f_down=Exists(feedback.filter(rating=Feedback.Rating.DOWN)),
        # Judged when some judge gave a verdict; passed when none of them failed it.
        j_any=Exists(scores),
        j_failed=Exists(scores.filter(passed=False)),
        escalated_=Exists(Escalation.objects.filter(turn=OuterRef("pk"))),
    )
    rows = turns.values("ab_variant_id").annotate(
        turns=Count("pk"),
        people=Count("conversation__owner_id", distinct=True),
        rated=Count("pk", filter=Q(f_rated=True)),
        thumbs_up=Count("pk", filter=Q(f_rated=True, f_down=False)),
        judged=Count("pk", filter=Q(j_any=True)),
        judge_passed=Count("pk", filter=Q(j_any=True, j_failed=False)),
        escalated=Count("pk", filter=Q(escalated_=True)),
        no_answers=Count("pk", filter=Q(no_answer=True)),
        total_ms_n=Count("total_ms"),
        total_ms_mean=Avg("total_ms"),
        total_ms_sd=StdDev("total_ms", sample=True),
        ttft_ms_n=Count("ttft_ms"),
        ttft_ms_mean=Avg("ttft_ms"),
        ttft_ms_sd=StdDev("ttft_ms", sample=True),
        cost_n=Count("cost"),
        cost_mean=Avg("cost"),
        cost_sd=StdDev("cost", sample=True),
    )
    return {row["ab_variant_id"]: row for row in rows}


def _samples(test: ABTest) -> dict[int, dict[str, list[float]]]:
    """One query: the newest `SAMPLE_CAP` turns' latencies per variant, for the medians."""
    ranked = compared_turns(test).annotate(
        newest=Window(RowNumber(), partition_by=[F("ab_variant_id")], order_by=F("pk").desc())
    )
    samples: dict[int, dict[str, list[float]]] = {}
    for variant_id, total_ms, ttft_ms in ranked.filter(newest__lte=SAMPLE_CAP).values_list(
        "ab_variant_id", "total_ms", "ttft_ms"
    ):
        arrays = samples.setdefault(variant_id, {"total_ms": [], "ttft_ms": []})
        if total_ms is not None:
            arrays["total_ms"].append(total_ms)
        if ttft_ms is not None:
            arrays["ttft_ms"].append(ttft_ms)
    return samples


def _float(value: Any) -> float | None:
    return float(value) if value is not None else None


def abtest_results(test: ABTest) -> Results:
    """Every variant's rates and means with 95% intervals, and each against the control."""
    variants = list(test.variants.select_related("endpoint", "prompt_version"))
    aggregates, samples = _aggregates(test), _samples(test)
    empty: dict[str, Any] = {}
    control = next((v for v in variants if v.is_control), variants[0] if variants else None)
    base = aggregates.get(control.pk, empty) if control else empty
    results = []
    for variant in variants:
        row = aggregates.get(variant.pk, empty)
        result = VariantResult(variant, turns=row.get("turns", 0), people=row.get("people", 0))
        is_control = control is not None and variant.pk == control.pk
        for label, key, numerator, denominator, better_when in _RATES:
            rate = stats.wilson(row.get(numerator, 0), row.get(denominator, 0))
            base_rate = stats.wilson(base.get(numerator, 0), base.get(denominator, 0))
            needed = more = None
            if base_rate.value is not None:
                needed = stats.sample_size(base_rate.value)
                more = max(0, needed - rate.n)
            result.rates.append(
                RateRow(
                    label,
                    key,
                    better_when,
                    rate,
                    None
                    if is_control
                    else stats.rate_difference(rate, base_rate, better_when=better_when),
                    needed,
                    more,
                )
            )
        for label, key, name, unit, with_median in _MEANS:
            own = (
                row.get(f"{name}_n", 0),
                _float(row.get(f"{name}_mean")),
                _float(row.get(f"{name}_sd")),
            )
            theirs = (
                base.get(f"{name}_n", 0),
                _float(base.get(f"{name}_mean")),
                _float(base.get(f"{name}_sd")),
            )
            median = (
                stats.median_ci(samples.get(variant.pk, {}).get(name, [])) if with_median else None
            )
            result.means.append(
                MeanRow(
                    label,
                    key,
                    unit,
                    stats.mean_ci(*own),
                    median,
                    None if is_control else stats.mean_difference(own, theirs, better_when="lower"),
                )
            )
        results.append(result)
    return Results(results, too_early=any(r.turns < stats.FLOOR for r in results))
