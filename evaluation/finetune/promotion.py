"""Gated promotion of a fine-tuned endpoint to the default, each step audited:

1. **Offline**: the same dataset version run against the candidate and the current default (two
   experiments, in the background). The candidate passes when it loses on no score: for every
   judge and reference metric, the 95% interval of the paired difference (candidate minus
   default, over the items both answered) does not lie wholly below zero.
2. **Online**: on a pass, a draft A/B test (the default as the control, the candidate as the
   challenger, half the people each) that the admin starts; its numbers are shown beside the
   offline ones.
3. **Promote** once the A/B test has run and the candidate is worse on none of its rates and
   means (a test still too early to call needs the admin's explicit acknowledgement); the A/B
   test is stopped and the candidate becomes the default. **Roll back** makes the default of
   before the default again, in one click.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone
from scipy import stats

from chatbot.console.abtests import abtest_promote
from chatbot.console.services import endpoint_set_default
from chatbot.models import ABTest, ABVariant, Dataset, Experiment, ModelEndpoint, Promotion
from chatbot.telemetry.audit import audit_record
from evaluation.abtests.services import (
    ABTestError,
    VariantSpec,
    abtest_results,
    abtest_save,
    abtest_start,
)
from evaluation.datasets import selectors as dataset_selectors
from evaluation.datasets.compare import CONFIDENCE, DEFAULT_TOLERANCE, compare
from evaluation.datasets.services import InvalidExperiment, experiment_create

WORSE = "worse"
EARLY = "too early to call"


class PromotionError(ValueError):
    """A refused step, in words for the admin."""


def _default() -> ModelEndpoint | None:
    return ModelEndpoint.objects.filter(is_default=True, enabled=True).first()


def promotion_start(*, endpoint: ModelEndpoint, dataset: Dataset, user: User) -> Promotion:
    """Run the dataset against the candidate and the current default, in the background."""
    if not hasattr(endpoint, "finetune_job"):
        raise PromotionError(f"“{endpoint.name}” is not a fine-tuned model.")
    baseline = _default()
    if baseline is None:
        raise PromotionError("There is no default model to compare with.")
    if baseline.pk == endpoint.pk:
        raise PromotionError(f"“{endpoint.name}” is already the default.")
    if not endpoint.enabled:
        raise PromotionError(f"Enable “{endpoint.name}” first.")
    try:
        with transaction.atomic():
            promotion = Promotion.objects.create(
                endpoint=endpoint, baseline=baseline, dataset=dataset, created_by=user
            )
            name = f"Promotion #{promotion.pk}"
            candidate = experiment_create(
                dataset=dataset, endpoint=endpoint, user=user, name=f"{name} · {endpoint.name}"
            )
            control = experiment_create(
                dataset=dataset, endpoint=baseline, user=user, name=f"{name} · {baseline.name}"
            )
            promotion.candidate_experiment, promotion.baseline_experiment = candidate, control
            promotion.save(update_fields=["candidate_experiment", "baseline_experiment"])
            audit_record(
                "finetune.promotion_start",
                target=promotion,
                details={"endpoint": endpoint.name, "baseline": baseline.name,
                         "dataset": dataset.name, "dataset_version": dataset.version},
                actor=user,
            )  # fmt: skip
    except IntegrityError:
        raise PromotionError(f"“{endpoint.name}” already has a promotion under way.") from None
    except InvalidExperiment as exc:
        raise PromotionError(str(exc)) from None
    return promotion


# --- step 1: the offline verdict -------------------------------------------------------------


def _interval(values: list[float]) -> list[float | None]:
    """[mean, low, high] of a paired difference (t interval; no interval under two values)."""
    if not values:
        return [None, None, None]
    mean = statistics.fmean(values)
    if len(values) < 2:
        return [mean, None, None]
    half = float(stats.t.ppf((1 + CONFIDENCE) / 2, len(values) - 1)) * statistics.stdev(values)
    half /= math.sqrt(len(values))
    return [mean, mean - half, mean + half]


def offline_verdict(baseline: Experiment, candidate: Experiment) -> dict[str, Any]:
    results_a = list(dataset_selectors.experiment_results(baseline))
    results_b = list(dataset_selectors.experiment_results(candidate))
    by_item_a = {r.item_id: r for r in results_a}
    comparison = compare(results_a, results_b)
    rows, lost = [], []
    for score in comparison.scores:
        diffs = [
            float(b.scores[score.label]) - float(a.scores[score.label])
            for b in results_b
            if (a := by_item_a.get(b.item_id)) is not None
            and (b.scores or {}).get(score.label) is not None
            and (a.scores or {}).get(score.label) is not None
        ]
        difference = _interval(diffs)
        mean, _, high = difference
        # Wholly below zero; with one item there is no interval, so the tolerance decides.
        loses = (high is not None and high < 0) or (
            high is None and mean is not None and mean < -DEFAULT_TOLERANCE
        )
        if loses:
            lost.append(score.label)
        rows.append({
            "label": score.label,
            "baseline": [score.a.mean, score.a.low, score.a.high],
            "candidate": [score.b.mean, score.b.low, score.b.high],
            "difference": difference,
            "n": len(diffs),
            "wins": score.wins, "losses": score.losses, "ties": score.ties,
            "lost": loses,
        })  # fmt: skip
    return {"scores": rows, "lost": lost, "shared_items": comparison.shared_items}


def promotion_refresh(promotion: Promotion) -> Promotion:
    """Judge the offline step once both experiments finished; on a pass, draft the A/B test."""
    if promotion.status != Promotion.Status.OFFLINE or promotion.offline_passed is not None:
        return promotion
    pair = [promotion.baseline_experiment, promotion.candidate_experiment]
    if any(e is None for e in pair):
        return promotion
    base, cand = pair[0], pair[1]
    assert base is not None and cand is not None
    if base.status == Experiment.Status.FAILED or cand.status == Experiment.Status.FAILED:
        verdict: dict[str, Any] = {"error": "An experiment failed: start the promotion again."}
        passed = False
    elif base.status == Experiment.Status.DONE and cand.status == Experiment.Status.DONE:
        verdict = offline_verdict(base, cand)
        passed = not verdict["lost"]
    else:
        return promotion
    with transaction.atomic():
        changed = Promotion.objects.filter(pk=promotion.pk, offline_passed__isnull=True).update(
            offline_passed=passed,
            verdict=verdict,
            status=Promotion.Status.OFFLINE if passed else Promotion.Status.LOST,
        )
        promotion.refresh_from_db()
        if changed:
            audit_record(
                "finetune.offline_verdict",
                target=promotion,
                details={
                    "passed": passed,
                    "lost": verdict.get("lost", []),
                    "error": verdict.get("error", ""),
                },
            )
            if passed:
                _abtest_draft(promotion)
    return promotion


# --- step 2: the online A/B test -------------------------------------------------------------


def _abtest_draft(promotion: Promotion) -> None:
    test = abtest_save(
        test=None,
        name=f"Promotion #{promotion.pk}: {promotion.endpoint.name}",
        description=f"Online step of the gated promotion of the fine-tuned model "
        f"“{promotion.endpoint.name}” against the default “{promotion.baseline}”.",
        variants=[
            VariantSpec(name="Default", weight=50, is_control=True),
            VariantSpec(name="Fine-tuned", weight=50, endpoint=promotion.endpoint),
        ],
        user=promotion.created_by,
    )
    promotion.abtest, promotion.status = test, Promotion.Status.ONLINE
    promotion.save(update_fields=["abtest", "status"])
    audit_record(
        "finetune.abtest",
        target=promotion,
        details={"ab_test": test.pk},
        actor=promotion.created_by,
    )


def promotion_abtest_start(*, promotion: Promotion, user: User) -> ABTest:
    if promotion.status != Promotion.Status.ONLINE or promotion.abtest is None:
        raise PromotionError("The online step comes after an offline experiment it did not lose.")
    try:
        return abtest_start(test=promotion.abtest)
    except ABTestError as exc:
        raise PromotionError(str(exc)) from None


@dataclass(frozen=True)
class Online:
    test: ABTest
    variant: ABVariant
    worse: list[str]
    too_early: bool
    results: Any


def online_state(promotion: Promotion) -> Online | None:
    test = promotion.abtest
    if test is None:
        return None
    variant = test.variants.filter(endpoint=promotion.endpoint).first()
    if variant is None:
        return None
    results = abtest_results(test)
    worse: list[str] = []
    for row in results.variants:
        if row.variant.pk == variant.pk:
            rows: list[Any] = [*row.rates, *row.means]
            worse = [r.label for r in rows if r.difference and r.difference.verdict == WORSE]
    return Online(
        test=test, variant=variant, worse=worse, too_early=results.too_early, results=results
    )


# --- step 3: promote, roll back --------------------------------------------------------------


def promotion_promote(
    *, promotion: Promotion, user: User, early_acknowledged: bool = False
) -> None:
    if promotion.status != Promotion.Status.ONLINE or not promotion.offline_passed:
        raise PromotionError(
            "Only a model that passed the offline step and is in its A/B test can be promoted."
        )
    online = online_state(promotion)
    if online is None or online.test.status == ABTest.Status.DRAFT:
        raise PromotionError("Start the A/B test first: promotion needs its online numbers.")
    if online.worse:
        raise PromotionError(
            f"The A/B test finds the fine-tuned model worse on: {', '.join(online.worse)}."
        )
    if online.too_early and not early_acknowledged:
        raise PromotionError(
            "The A/B test is still too early to call: tick the box to promote on the offline result alone."
        )
    # The decision is recorded before it is carried out, in the same transaction: the gate
    # (`gate.promotion_gate_refusal`) and the console's A/B promotion open only for a promotion
    # marked promoted, so this is the one way a fine-tuned model becomes the default. Marking it
    # only while it is still online makes a second click (another tab) a refusal, not a repeat.
    try:
        with transaction.atomic():
            marked = Promotion.objects.filter(
                pk=promotion.pk, status=Promotion.Status.ONLINE
            ).update(status=Promotion.Status.PROMOTED, promoted_by=user, promoted_at=timezone.now())
            if not marked:
                raise PromotionError(f"“{promotion.endpoint.name}” was promoted already.")
            abtest_promote(test=online.test, variant=online.variant, user=user)
            audit_record(
                "finetune.promote",
                target=promotion,
                details={"endpoint": promotion.endpoint.name, "ab_test": online.test.pk,
                         "too_early": online.too_early},
                actor=user,
            )  # fmt: skip
    except PromotionError:
        raise
    except (ABTestError, ValueError) as exc:
        raise PromotionError(str(exc)) from None
    promotion.refresh_from_db()


def promotion_rollback(*, promotion: Promotion, user: User) -> None:
    if promotion.status != Promotion.Status.PROMOTED:
        raise PromotionError("Only a promoted model can be rolled back.")
    baseline = promotion.baseline
    if baseline is None:
        raise PromotionError("The model that was the default before is gone from the catalogue.")
    with transaction.atomic():
        try:
            endpoint_set_default(endpoint=baseline, user=user)
        except ValueError as exc:
            raise PromotionError(str(exc)) from None
        promotion.status, promotion.rolled_back_by, promotion.rolled_back_at = (
            Promotion.Status.ROLLED_BACK, user, timezone.now(),
        )  # fmt: skip
        promotion.save(update_fields=["status", "rolled_back_by", "rolled_back_at"])
        audit_record(
            "finetune.rollback",
            target=promotion,
            details={"endpoint": promotion.endpoint.name, "default_again": baseline.name},
            actor=user,
        )
