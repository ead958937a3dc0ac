"""Gated promotion of a fine-tuned model: an offline experiment against the default (it must not
lose), then an online A/B test, then the switch and a one-click rollback, each step audited; and
"make default" refuses a fine-tuned model that skipped the gates."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

from chatbot.console.services import endpoint_set_default
from chatbot.models import ABTest, AuditEntry, Dataset, FineTuneJob, ModelEndpoint, Promotion
from evaluation.datasets import runner
from evaluation.datasets import services as datasets
from evaluation.finetune import promotion as gates
from evaluation.finetune import services
from evaluation.offline.data import ItemData
from tests.evaluation.finetune.support import QA, sft_export

pytestmark = pytest.mark.django_db(transaction=True)


def _trained(alice: User, rita: User, adam: User, base: Path) -> ModelEndpoint:
    job, _ = services.finetune_create(
        export=sft_export(alice, rita), method="sft", base_model=str(base),
        hyperparameters={"max_steps": 1, "batch_size": 2, "max_length": 256}, user=adam, queue=False,
    )  # fmt: skip
    services.finetune_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == FineTuneJob.Status.DONE, job.error
    assert job.endpoint is not None
    return job.endpoint


def _offline(promotion: Promotion) -> Promotion:
    for experiment in (promotion.candidate_experiment, promotion.baseline_experiment):
        assert experiment is not None
        runner.experiment_run(experiment_id=experiment.pk)
    promotion.refresh_from_db()
    return gates.promotion_refresh(promotion)


def _dataset(gold: str = "") -> Dataset:
    items = [
        ItemData(question=q, expected_answer=gold or a, answers=(gold or a,)) for q, a in QA[:3]
    ]
    return datasets.dataset_create(name="Promotion check", items=items)


def test_it_promotes_through_both_gates_and_rolls_back(
    alice: User,
    rita: User,
    adam: User,
    tiny_base: Path,
    fake_endpoint: Callable[..., ModelEndpoint],
) -> None:
    default = fake_endpoint(["I am not sure, sorry."], name="current-default")
    candidate = _trained(alice, rita, adam, tiny_base)
    with pytest.raises(ValueError, match="fine-tuned model"):
        endpoint_set_default(endpoint=candidate, user=adam)  # the gate: no skipping

    promotion = gates.promotion_start(endpoint=candidate, dataset=_dataset(), user=adam)
    with pytest.raises(gates.PromotionError, match="already has a promotion"):
        gates.promotion_start(endpoint=candidate, dataset=promotion.dataset, user=adam)
    promotion = _offline(promotion)

    assert promotion.offline_passed is True and promotion.status == Promotion.Status.ONLINE
    f1 = next(s for s in promotion.verdict["scores"] if s["label"] == "token_f1")
    assert f1["n"] == 3 and not f1["lost"] and len(f1["baseline"]) == len(f1["difference"]) == 3
    test = promotion.abtest
    assert test is not None and test.status == ABTest.Status.DRAFT
    assert {v.endpoint_id for v in test.variants.all()} == {None, candidate.pk}
    with pytest.raises(gates.PromotionError, match="Start the A/B test"):
        gates.promotion_promote(promotion=promotion, user=adam)
    with pytest.raises(ValueError, match="fine-tuned model"):
        endpoint_set_default(endpoint=candidate, user=adam)  # offline alone is not enough

    gates.promotion_abtest_start(promotion=promotion, user=adam)
    with pytest.raises(gates.PromotionError, match="too early"):
        gates.promotion_promote(promotion=promotion, user=adam)
    gates.promotion_promote(promotion=promotion, user=adam, early_acknowledged=True)
    candidate.refresh_from_db()
    test.refresh_from_db()
    assert candidate.is_default and test.status == ABTest.Status.STOPPED and test.winner is not None

    promotion.refresh_from_db()
    gates.promotion_rollback(promotion=promotion, user=adam)
    default.refresh_from_db()
    candidate.refresh_from_db()
    assert default.is_default and not candidate.is_default
    actions = list(
        AuditEntry.objects.filter(action__startswith="finetune.").values_list("action", flat=True)
    )
    for step in ("promotion_start", "offline_verdict", "abtest", "promote", "rollback"):
        assert f"finetune.{step}" in actions


def test_it_stops_a_model_that_loses_offline(
    alice: User,
    rita: User,
    adam: User,
    tiny_base: Path,
    fake_endpoint: Callable[..., ModelEndpoint],
) -> None:
    # The default gives every item its gold answer; the tiny random model cannot.
    gold = "Open the help portal and follow the reset steps."
    fake_endpoint([gold], name="strong-default")
    candidate = _trained(alice, rita, adam, tiny_base)
    promotion = _offline(
        gates.promotion_start(endpoint=candidate, dataset=_dataset(gold), user=adam)
    )

    assert promotion.offline_passed is False and promotion.status == Promotion.Status.LOST
    assert "token_f1" in promotion.verdict["lost"] and promotion.abtest is None
    with pytest.raises(gates.PromotionError):
        gates.promotion_promote(promotion=promotion, user=adam, early_acknowledged=True)
    with pytest.raises(ValueError, match="fine-tuned model"):
        endpoint_set_default(endpoint=candidate, user=adam)


def test_the_job_page_shows_both_gates_and_promotes_and_rolls_back_in_one_click(
    alice: User,
    rita: User,
    adam: User,
    tiny_base: Path,
    fake_endpoint: Callable[..., ModelEndpoint],
    client_as: Callable[[User], Client],
) -> None:
    default = fake_endpoint(["I am not sure, sorry."], name="current-default")
    candidate = _trained(alice, rita, adam, tiny_base)
    job = FineTuneJob.objects.get(endpoint=candidate)
    client = client_as(adam)
    dataset = _dataset()
    client.post(f"/review/finetune/{job.pk}/promotion/", {"dataset": dataset.pk})
    promotion = _offline(Promotion.objects.get(endpoint=candidate))

    page = client.get(f"/review/finetune/{job.pk}/").content.decode()
    assert "does not lose" in page and "95% confidence intervals" in page and "[" in page
    assert "Start the A/B test" in page
    client.post(f"/review/finetune/promotions/{promotion.pk}/abtest/")
    page = client.get(f"/review/finetune/{job.pk}/").content.decode()
    assert "Too early to call" in page and "Promote to default" in page and "Thumbs up" in page

    client.post(f"/review/finetune/promotions/{promotion.pk}/promote/", {"early": "1"})
    candidate.refresh_from_db()
    assert candidate.is_default
    assert (
        "Roll back to current-default" in client.get(f"/review/finetune/{job.pk}/").content.decode()
    )
    client.post(f"/review/finetune/promotions/{promotion.pk}/rollback/")
    default.refresh_from_db()
    assert default.is_default


def test_the_console_ab_page_cannot_promote_a_promotions_test_past_its_gates(
    alice: User,
    rita: User,
    adam: User,
    tiny_base: Path,
    fake_endpoint: Callable[..., ModelEndpoint],
    client_as: Callable[[User], Client],
) -> None:
    default = fake_endpoint(["I am not sure, sorry."], name="current-default")
    candidate = _trained(alice, rita, adam, tiny_base)
    job = FineTuneJob.objects.get(endpoint=candidate)
    promotion = _offline(gates.promotion_start(endpoint=candidate, dataset=_dataset(), user=adam))
    gates.promotion_abtest_start(promotion=promotion, user=adam)
    test = promotion.abtest
    assert test is not None
    challenger = test.variants.get(endpoint=candidate)
    client = client_as(adam)

    # The A/B page points to the promotion instead of offering its own Promote button.
    page = client.get(f"/console/abtests/{test.pk}/").content.decode()
    assert f'href="/review/finetune/{job.pk}/"' in page
    assert f"/console/abtests/{test.pk}/promote/" not in page
    # Its Promote action, posted anyway, is refused with the way to the promotion's page.
    response = client.post(
        f"/console/abtests/{test.pk}/promote/", {"variant": challenger.pk}, follow=True
    )
    refusal = response.content.decode()
    assert "online step of the gated promotion" in refusal
    assert f"/review/finetune/{job.pk}/" in refusal
    for variant in test.variants.all():  # the control cannot end the promotion either
        client.post(f"/console/abtests/{test.pk}/promote/", {"variant": variant.pk})
    # Nor can "make default" in the catalogue while the A/B test runs.
    with pytest.raises(ValueError, match="fine-tuned model"):
        endpoint_set_default(endpoint=candidate, user=adam)

    candidate.refresh_from_db()
    test.refresh_from_db()
    promotion.refresh_from_db()
    assert not candidate.is_default and ModelEndpoint.objects.get(is_default=True) == default
    assert test.status == ABTest.Status.RUNNING and test.winner is None
    assert promotion.status == Promotion.Status.ONLINE and promotion.promoted_at is None
    assert not AuditEntry.objects.filter(action="endpoint.default").exists()

    # The promotion's own path: recorded, the test stopped with its winner, rollback offered.
    other_tab = Promotion.objects.get(pk=promotion.pk)
    client.post(f"/review/finetune/promotions/{promotion.pk}/promote/", {"early": "1"})
    promotion.refresh_from_db()
    test.refresh_from_db()
    candidate.refresh_from_db()
    assert promotion.status == Promotion.Status.PROMOTED and promotion.promoted_by == adam
    assert candidate.is_default and test.winner == challenger
    assert AuditEntry.objects.filter(action="finetune.promote", actor_id=adam.pk).count() == 1
    page = client.get(f"/review/finetune/{job.pk}/").content.decode()
    assert "Roll back to current-default" in page
    # A second click (another tab) is refused, not recorded twice.
    with pytest.raises(gates.PromotionError, match="promoted already"):
        gates.promotion_promote(promotion=other_tab, user=adam, early_acknowledged=True)
    assert AuditEntry.objects.filter(action="finetune.promote").count() == 1

    gates.promotion_rollback(promotion=promotion, user=adam)
    default.refresh_from_db()
    assert default.is_default
    # Rolled back: the gate is shut again until a new promotion.
    with pytest.raises(ValueError, match="fine-tuned model"):
        endpoint_set_default(endpoint=candidate, user=adam)
