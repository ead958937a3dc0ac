"""Experiments end to end: the real pipeline (no Turn written), the built-in judges and the
reference metrics, with langchain-core's fake chat model at the network edge."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from django.contrib.auth.models import User

from chatbot.models import (
    AssistantSettings,
    Dataset,
    Experiment,
    ExperimentResult,
    ModelEndpoint,
    Turn,
)
from evaluation import selectors as judge_selectors
from evaluation import services as judge_services
from evaluation.datasets import runner, services
from evaluation.offline.data import ItemData
from tests.evaluation.datasets.helpers import EVALSET_ROWS, rows_to_items
from tests.knowledge.test_search import make_knowledge_base

pytestmark = pytest.mark.django_db

ANSWER = "The link expires after 30 minutes."
# Scored against the gold answers (SQuAD normalisation drops "the"):
#   q1 best gold "after 30 minutes": 3 of 5 answer tokens, all 3 gold -> F1 0.75; containment 1
#   q2 gold "tray 2": nothing in common -> F1 0, containment 0
#   q3 is unanswerable and the model answered anyway -> refusal_correct 0
OFF = {"grounding": "off"}


def evalset() -> Dataset:
    return services.dataset_create(name="covid", items=rows_to_items(EVALSET_ROWS))


def run(experiment: Experiment) -> Experiment:
    finished = runner.experiment_run(experiment_id=experiment.pk)
    assert finished is not None
    return finished


def by_question(experiment: Experiment) -> dict[str, ExperimentResult]:
    return {r.item.question: r for r in experiment.results.select_related("item")}


def test_it_runs_a_dataset_through_the_pipeline_judges_and_metrics(
    rita: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    endpoint = fake_endpoint([ANSWER])
    judge_services.judges_ensure()
    experiment = services.experiment_create(
        dataset=evalset(), endpoint=endpoint, retrieval=OFF, user=rita, queue=False
    )

    done = run(experiment)

    assert done.status == Experiment.Status.DONE and done.error == ""
    assert (done.items_done, done.items_total, done.percent) == (3, 3, 100)
    assert done.dataset_version == 1 and done.started_at and done.finished_at
    results = by_question(done)
    q1 = results["When does the password reset link expire?"]
    assert q1.answer == ANSWER and not q1.error and not q1.no_answer
    assert q1.scores["token_f1"] == 0.75 and q1.scores["containment"] == 1.0
    assert q1.scores["refusal_correct"] is None
    assert q1.scores["pii"] == 1.0 and q1.scores["format"] == 1.0
    # No retrieved context: the faithfulness baseline does not apply.
    assert q1.scores["faithfulness-overlap"] is None
    assert q1.tokens_out > 0 and q1.cost > Decimal(0) and q1.latency_ms > 0
    q3 = results["What is the capital of Mongolia?"]
    assert q3.scores["refusal_correct"] == 0.0 and q3.scores["token_f1"] is None

    summary = done.summary
    assert summary["n"] == 3 and summary["errors"] == 0 and summary["refused"] == 0
    assert summary["metrics"] == {"token_f1": 0.375, "containment": 0.5, "refusal_correct": 0.0}
    # Every enabled judge ran (the built-in set grows; these are the ones checked here).
    assert set(summary["judges"]) == {j.name for j in judge_selectors.judges_active()}
    assert {"faithfulness-overlap", "format", "pii", "toxicity"} <= set(summary["judges"])
    assert summary["judges"]["faithfulness-overlap"] is None
    assert summary["judges"]["pii"] == 1.0 and summary["judges"]["toxicity"] > 0.5
    # Offline runs leave no trace in production figures or settings.
    assert not Turn.objects.exists() and not AssistantSettings.objects.exists()


def test_it_resumes_after_partial_results_and_is_safe_to_run_again(
    rita: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    endpoint = fake_endpoint([ANSWER])
    experiment = services.experiment_create(
        dataset=evalset(), endpoint=endpoint, retrieval=OFF, user=rita, queue=False
    )
    first = experiment.dataset.items.order_by("pk")[0]
    # What a worker killed after its first item leaves behind.
    ExperimentResult.objects.create(experiment=experiment, item=first, answer="kept as it was")
    Experiment.objects.filter(pk=experiment.pk).update(
        status=Experiment.Status.RUNNING, items_done=1
    )

    done = run(experiment)

    assert done.status == Experiment.Status.DONE and done.items_done == 3
    assert done.results.count() == 3
    assert done.results.get(item=first).answer == "kept as it was"
    assert done.results.exclude(item=first).filter(answer=ANSWER).count() == 2
    again = run(done)
    assert again.results.count() == 3 and again.finished_at == done.finished_at


def test_it_records_a_model_error_on_the_item_and_still_finishes(
    rita: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    endpoint = fake_endpoint([ANSWER], error_on_chunk=2)
    judge_services.judges_ensure()
    experiment = services.experiment_create(
        dataset=evalset(), endpoint=endpoint, retrieval=OFF, user=rita, queue=False
    )

    done = run(experiment)

    assert done.status == Experiment.Status.DONE
    assert done.summary["errors"] == 3
    q1 = by_question(done)["When does the password reset link expire?"]
    assert q1.error and q1.scores["pii"] is None and q1.scores["token_f1"] == 0.0


def test_it_records_null_for_a_judge_that_fails_without_failing_the_run(
    rita: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    endpoint = fake_endpoint([ANSWER])
    judges = {j.name: j for j in judge_services.judges_ensure()}
    # The judge model is the same fake: its output has no "Score: N", so the judge fails.
    judge_services.judge_new_version(judge=judges["relevance-llm"], enabled=True)
    experiment = services.experiment_create(
        dataset=evalset(), endpoint=endpoint, retrieval=OFF, user=rita, queue=False
    )

    done = run(experiment)

    assert done.status == Experiment.Status.DONE
    assert done.summary["judges"]["relevance-llm"] is None
    assert all(r.scores["relevance-llm"] is None for r in done.results.all())
    assert done.summary["judges"]["pii"] == 1.0


def test_it_fails_with_the_reason_when_the_model_is_disabled(
    rita: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    endpoint = fake_endpoint([ANSWER])
    experiment = services.experiment_create(
        dataset=evalset(), endpoint=endpoint, retrieval=OFF, user=rita, queue=False
    )
    ModelEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False)

    done = run(experiment)

    assert done.status == Experiment.Status.FAILED
    assert "does not exist or is disabled" in done.error
    assert not done.results.exists()


def test_it_answers_from_the_knowledge_base_with_its_own_settings(
    adam: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    kb = make_knowledge_base()
    # Production chat runs with grounding off; the experiment must not change that.
    saved, _ = AssistantSettings.objects.update_or_create(
        pk=1, defaults={"grounding": "off", "retrieval_k": 5}
    )
    endpoint = fake_endpoint(["Open the sign-in page and click Forgot password [1]."])
    judge_services.judges_ensure()
    dataset = services.dataset_create(
        name="grounded",
        items=[
            ItemData(question="How do I reset a forgotten password?",
                     expected_answer="click Forgot password", answers=("click Forgot password",)),
            ItemData(question="What is the capital of Mongolia?", unanswerable=True),
        ],
    )  # fmt: skip
    retrieval = {
        "grounding": "required",
        "k": 3,
        "min_similarity": 0.3,
        "collections": [kb.help.pk],
    }
    experiment = services.experiment_create(
        dataset=dataset, endpoint=endpoint, retrieval=retrieval, user=adam, queue=False
    )
    assert experiment.kb_versions == {str(kb.help.pk): kb.help.version}

    done = run(experiment)

    results = by_question(done)
    grounded = results["How do I reset a forgotten password?"]
    assert grounded.context[0]["external_id"] == "pw-reset"
    assert {c["external_id"] for c in grounded.context} <= {"pw-reset", "vpn", "printer"}
    assert grounded.scores["format"] == 1.0  # it cites [1]
    assert grounded.scores["faithfulness-overlap"] is not None
    assert grounded.scores["token_f1"] > 0
    refused = results["What is the capital of Mongolia?"]
    assert refused.no_answer and refused.scores["refusal_correct"] == 1.0
    assert done.summary["refused"] == 1 and done.summary["kb_changed_during_run"] is False
    saved_after = AssistantSettings.objects.get(pk=1)
    assert (saved_after.grounding, saved_after.retrieval_k) == ("off", 5)
    assert saved_after.updated_at == saved.updated_at


def test_it_refuses_to_start_an_experiment_it_cannot_run(
    rita: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    endpoint = fake_endpoint([ANSWER])
    empty = services.dataset_create(name="empty")
    with pytest.raises(services.InvalidExperiment, match="has no items"):
        services.experiment_create(dataset=empty, endpoint=endpoint, retrieval=OFF, user=rita)
    with pytest.raises(services.InvalidExperiment, match="from 1 to 20"):
        services.experiment_create(
            dataset=evalset(), endpoint=endpoint, retrieval={"k": 50}, user=rita
        )
    with pytest.raises(services.InvalidExperiment, match="retrieve as a person"):
        services.experiment_create(
            dataset=Dataset.objects.get(name="covid"),
            endpoint=endpoint,
            retrieval={"grounding": "required"},
        )
    assert not Experiment.objects.exists()


def test_it_queues_the_run_once_the_transaction_commits(
    rita: User, fake_endpoint: Callable[..., ModelEndpoint], django_capture_on_commit_callbacks
) -> None:
    endpoint = fake_endpoint([ANSWER])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        experiment = services.experiment_create(
            dataset=evalset(), endpoint=endpoint, retrieval=OFF, user=rita
        )
    assert len(callbacks) == 1
    assert experiment.status == Experiment.Status.QUEUED and experiment.items_total == 3
