"""The retention job in the background: daily from Celery beat, or queued by "Run now"."""

from __future__ import annotations

from celery import shared_task

from chatbot.jobs import ALREADY_RUNNING, job_exclusive
from chatbot.models import RetentionRun
from evaluation.retention.services import retention_run


@shared_task(name="evaluation.retention_run")
def retention_run_task(run_id: int | None = None) -> str:
    """One pass (a queued run's, or a new one); one pass at a time."""
    with job_exclusive("retention", 0) as mine:
        if not mine:
            return ALREADY_RUNNING
        run = RetentionRun.objects.filter(pk=run_id).first() if run_id else None
        if run_id and run is None:
            return "missing"
        return retention_run(run=run, user=run.requested_by if run else None).status
