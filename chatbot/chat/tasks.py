"""Background jobs for chat. Tasks take ids or nothing, and are safe to run twice."""

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from chatbot.chat import extraction, services
from chatbot.jobs import ALREADY_RUNNING, job_exclusive

logger = logging.getLogger(__name__)

# 50 texts, each up to two model calls of a few seconds on the bundled model on two cores.
EXTRACTION_SOFT_LIMIT_S = 30 * 60


@shared_task(name="chat.turns_expire_stale")
def turns_expire_stale() -> int:
    """Close turns a dead process left pending or streaming (runs every few minutes)."""
    return services.turns_expire_stale()


@shared_task(
    name=extraction.TASK,
    soft_time_limit=EXTRACTION_SOFT_LIMIT_S,
    time_limit=EXTRACTION_SOFT_LIMIT_S + 120,
)
def extraction_run_task(run_id: int) -> str:
    """Extract a run's texts; a redelivered task carries on from the first text not done."""
    with job_exclusive("extraction", run_id) as mine:
        if not mine:
            return ALREADY_RUNNING
        try:
            return extraction.extraction_run_process(run_id=run_id).status
        except SoftTimeLimitExceeded:
            extraction.extraction_run_fail(
                run_id=run_id,
                reason="The run took longer than 30 minutes and was stopped; the results so "
                "far are kept. Send the remaining texts as a new run.",
            )
            return "failed"
        except Exception as exc:
            # A clear failed state with the reason, not a run left "running" for ever.
            logger.exception("extraction run %s stopped", run_id)
            extraction.extraction_run_fail(
                run_id=run_id,
                reason=f"The run stopped on an unexpected error ({type(exc).__name__}); the "
                "results so far are kept.",
            )
            return "failed"
