"""Background jobs for fine-tuning. Tasks take ids and are safe to run twice."""

from __future__ import annotations

from celery import shared_task

from chatbot.jobs import ALREADY_RUNNING, job_exclusive
from evaluation.finetune import services


@shared_task(name="evaluation.finetune_run")
def finetune_run_task(job_id: int) -> str:
    """Train one job; a redelivered task finds it finished, or trains it again from the start."""
    with job_exclusive("finetune", job_id) as mine:
        if not mine:
            return ALREADY_RUNNING
        job = services.finetune_run(job_id=job_id)
        return "missing" if job is None else job.status
