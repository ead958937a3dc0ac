"""The stale-job sweep covers fine-tuning jobs and synthetic-question runs: a lost message is sent
again once, a job that makes progress (however long it runs) is left alone, and a finished or
cancelled one is never sent. The queue is the real test Redis, read as tests/test_jobs.py does."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from chatbot import jobs
from chatbot.models import Collection, Dataset, Export, FineTuneJob, SyntheticRun
from evaluation.finetune.backends import LOG_LIMIT, Reporter
from evaluation.finetune.services import finetune_cancel
from evaluation.finetune.tasks import finetune_run_task
from evaluation.synthetic.services import synthetic_run_resume
from tests.test_jobs import _clean, queued

FINETUNE = "evaluation.finetune_run"
SYNTHETIC = "evaluation.synthetic_run"
_requests = itertools.count()


@pytest.fixture(autouse=True)
def _empty_queue() -> Iterator[None]:
    _clean()
    yield
    _clean()


def _finetune(status: str = FineTuneJob.Status.QUEUED, **fields: Any) -> FineTuneJob:
    export = Export.objects.create(kind=Export.Kind.SFT, status=Export.Status.DONE)
    return FineTuneJob.objects.create(
        export=export, method=FineTuneJob.Method.SFT, base_model="/models/tiny",
        fingerprint=f"request-{next(_requests)}", status=status, **fields,
    )  # fmt: skip


def _synthetic(status: str = SyntheticRun.Status.QUEUED, **fields: Any) -> SyntheticRun:
    dataset, _ = Dataset.objects.get_or_create(name="Synthetic questions")
    collection, _ = Collection.objects.get_or_create(name="Handbook")
    return SyntheticRun.objects.create(
        dataset=dataset, collection=collection, endpoint_name="fake", kinds=["variant"],
        chunk_ids=[1, 2, 3], chunks_total=3, prompt_version="v1", status=status, **fields,
    )  # fmt: skip


def _age(row: Any, minutes: int = settings.JOBS_STALE_MINUTES + 1) -> None:
    type(row).objects.filter(pk=row.pk).update(
        created_at=timezone.now() - timedelta(minutes=minutes)
    )


@pytest.mark.django_db
def test_it_sends_again_a_lost_finetune_job_and_synthetic_run_once() -> None:
    job, run = _finetune(), _synthetic()
    _age(job)
    _age(run)
    fresh_job, fresh_run = _finetune(), _synthetic()

    sent = jobs.jobs_requeue_stale()

    assert (sent["finetune"], sent["synthetic"]) == (1, 1)
    assert sorted(queued()) == sorted([(FINETUNE, [job.pk]), (SYNTHETIC, [run.pk])])
    assert (FINETUNE, [fresh_job.pk]) not in queued() and (
        SYNTHETIC,
        [fresh_run.pk],
    ) not in queued()
    again = jobs.jobs_requeue_stale()
    assert (again["finetune"], again["synthetic"]) == (0, 0)
    assert len(queued()) == 2, "a slow queue does not get a copy of the same job every sweep"


@pytest.mark.django_db
def test_it_leaves_a_long_finetune_job_and_synthetic_run_alone_while_they_progress(
    settings: Any,
) -> None:
    settings.JOBS_STALE_MINUTES = 0
    long_ago = timezone.now() - timedelta(hours=3)
    moving = _finetune(status=FineTuneJob.Status.RUNNING, started_at=long_ago, steps_total=900)
    stuck = _finetune(status=FineTuneJob.Status.RUNNING, started_at=long_ago, steps_total=900)
    generating = _synthetic(status=SyntheticRun.Status.RUNNING, started_at=long_ago)
    dead = _synthetic(status=SyntheticRun.Status.RUNNING, started_at=long_ago)
    for row in (moving, stuck, generating, dead):
        _age(row, minutes=200)

    first = jobs.jobs_requeue_stale()
    FineTuneJob.objects.filter(pk=moving.pk).update(steps_done=1, losses=[{"step": 1}])
    SyntheticRun.objects.filter(pk=generating.pk).update(chunks_done=1)
    second = jobs.jobs_requeue_stale()

    assert (first["finetune"], first["synthetic"]) == (0, 0), "the first sighting starts the clock"
    assert (second["finetune"], second["synthetic"]) == (1, 1)
    assert sorted(queued()) == sorted([(FINETUNE, [stuck.pk]), (SYNTHETIC, [dead.pk])])


@pytest.mark.django_db
def test_it_counts_a_finetune_log_line_as_progress_even_at_the_log_limit(settings: Any) -> None:
    """Loading a model or a hosted job's event writes only a log line; the log keeps its newest
    LOG_LIMIT characters, so a full log moves without growing."""
    settings.JOBS_STALE_MINUTES = 0
    job = _finetune(status=FineTuneJob.Status.RUNNING, log="x" * LOG_LIMIT)

    jobs.jobs_requeue_stale()
    Reporter(job).log("loading /models/tiny")
    assert len(FineTuneJob.objects.get(pk=job.pk).log) == LOG_LIMIT
    after_log_line = jobs.jobs_requeue_stale()
    silent = jobs.jobs_requeue_stale()

    assert after_log_line["finetune"] == 0
    assert silent["finetune"] == 1, "no line since the last sweep: stuck"
    assert queued() == [(FINETUNE, [job.pk])]


@pytest.mark.django_db
def test_it_never_sends_a_finished_or_cancelled_finetune_job_or_synthetic_run(
    settings: Any, adam: User
) -> None:
    settings.JOBS_STALE_MINUTES = 0
    cancelled = _finetune()
    assert finetune_cancel(job=cancelled, user=adam)
    rows: list[Any] = [
        cancelled,
        _finetune(status=FineTuneJob.Status.DONE),
        _finetune(status=FineTuneJob.Status.FAILED),
        _finetune(status=FineTuneJob.Status.CANCELLED, cancel_requested=True),
        _synthetic(status=SyntheticRun.Status.DONE, chunks_done=3),
        _synthetic(status=SyntheticRun.Status.FAILED, started_at=timezone.now()),
    ]
    for row in rows:
        _age(row, minutes=600)

    sweeps = [jobs.jobs_requeue_stale() for _ in range(3)]

    assert [(s["finetune"], s["synthetic"]) for s in sweeps] == [(0, 0)] * 3
    assert queued() == []


@pytest.mark.django_db
def test_it_gives_a_resumed_synthetic_run_a_window_then_sends_it_again(
    settings: Any, rita: User
) -> None:
    run = _synthetic(status=SyntheticRun.Status.FAILED, chunks_done=1)
    SyntheticRun.objects.filter(pk=run.pk).update(
        started_at=timezone.now() - timedelta(hours=5), error="The model was unreachable."
    )
    _age(run, minutes=300)
    # Resume queues the job on commit; this test's transaction never commits, as if that
    # message were lost.
    synthetic_run_resume(run=run, user=rita)

    assert jobs.jobs_requeue_stale()["synthetic"] == 0, "resumed just now, whatever its age"
    settings.JOBS_STALE_MINUTES = 0
    assert jobs.jobs_requeue_stale()["synthetic"] == 1
    assert queued() == [(SYNTHETIC, [run.pk])]


@pytest.mark.django_db
def test_it_closes_a_cancelled_finetune_job_whose_worker_died(settings: Any, adam: User) -> None:
    """A job cancelled while running, whose worker died before its next step: the sweep sends
    it again and the copy records the cancel instead of training."""
    settings.JOBS_STALE_MINUTES = 0
    job = _finetune(status=FineTuneJob.Status.RUNNING, started_at=timezone.now(), steps_done=4)
    assert finetune_cancel(job=job, user=adam)

    jobs.jobs_requeue_stale()
    assert jobs.jobs_requeue_stale()["finetune"] == 1
    [(task, args)] = queued()
    assert task == FINETUNE

    assert finetune_run_task(*args) == FineTuneJob.Status.CANCELLED
    job.refresh_from_db()
    assert job.finished_at is not None
    assert jobs.jobs_requeue_stale()["finetune"] == 0
