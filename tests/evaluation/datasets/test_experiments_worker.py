"""An experiment queued from the service runs in a real Celery worker over the test Redis."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from celery.contrib.testing.worker import TestWorkController
from django.contrib.auth.models import User

from chatbot.celery import app
from chatbot.models import Experiment, ModelEndpoint, Turn
from evaluation.datasets import services
from evaluation.datasets.tasks import experiment_run_task
from tests.evaluation.datasets.helpers import EVALSET_ROWS, rows_to_items

pytestmark = pytest.mark.django_db(transaction=True)


def _wait_until_finished(experiment: Experiment) -> Experiment:
    # A deadline so a broken worker fails the test instead of hanging it; not a timing claim.
    deadline = time.monotonic() + 120
    seen_progress: set[int] = set()
    while time.monotonic() < deadline:
        experiment.refresh_from_db()
        seen_progress.add(experiment.items_done)
        if experiment.status in {Experiment.Status.DONE, Experiment.Status.FAILED}:
            return experiment
        time.sleep(0.05)
    raise AssertionError(f"the experiment is still {experiment.status}")


def test_it_runs_an_experiment_in_a_real_worker(
    rita: User, fake_endpoint: Callable[..., ModelEndpoint], worker: TestWorkController
) -> None:
    endpoint = fake_endpoint(["The link expires after 30 minutes."], sleep=0.01)
    dataset = services.dataset_create(name="covid", items=rows_to_items(EVALSET_ROWS))

    experiment = services.experiment_create(
        dataset=dataset, endpoint=endpoint, retrieval={"grounding": "off"}, user=rita
    )

    done = _wait_until_finished(experiment)
    assert done.status == Experiment.Status.DONE, done.error
    assert done.items_done == 3 and done.results.count() == 3
    assert done.summary["n"] == 3 and done.summary["metrics"]["token_f1"] == 0.375
    assert not Turn.objects.exists()
    # Queued again (a redelivered message): nothing is answered twice.
    assert experiment_run_task.delay(experiment.pk).get(timeout=60) == "done"
    assert done.results.count() == 3


def test_the_worker_knows_the_experiment_task() -> None:
    assert "evaluation.experiment_run" in app.tasks
    task = app.tasks["evaluation.experiment_run"]
    assert task.acks_late and task.reject_on_worker_lost
