"""Experiments in the background. The task takes the experiment's id and resumes: items already
answered are skipped, so running it twice, or again after a worker died, finishes the run."""

from __future__ import annotations

from celery import shared_task

from chatbot.jobs import ALREADY_RUNNING, job_exclusive
from evaluation.datasets import runner


# acks_late with reject_on_worker_lost: a worker killed mid-run leaves the message on the queue,
# and the next worker resumes the experiment instead of it staying "running" for ever.
@shared_task(name="evaluation.experiment_run", acks_late=True, reject_on_worker_lost=True)
def experiment_run_task(experiment_id: int) -> str:
    with job_exclusive("experiment", experiment_id) as mine:
        if not mine:
            return ALREADY_RUNNING
        experiment = runner.experiment_run(experiment_id=experiment_id)
        return "missing" if experiment is None else experiment.status
