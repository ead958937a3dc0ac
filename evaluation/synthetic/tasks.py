"""The synthetic-question job. It takes the run's id and resumes: chunks already done are passed
over, so running it twice, or again after a worker died, finishes the run once."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from chatbot.jobs import ALREADY_RUNNING, job_exclusive
from chatbot.models import SyntheticRun
from evaluation.synthetic import services

logger = logging.getLogger(__name__)

# 200 chunks, each up to four model calls (two kinds, one retry each) of a few seconds.
SOFT_LIMIT_S = 60 * 60


@shared_task(
    name=services.TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=SOFT_LIMIT_S,
    time_limit=SOFT_LIMIT_S + 120,
)
def synthetic_run_task(run_id: int) -> str:
    with job_exclusive("synthetic", run_id) as mine:
        if not mine:
            return ALREADY_RUNNING
        try:
            return services.synthetic_run_process(run_id=run_id).status
        except SyntheticRun.DoesNotExist:
            return "missing"
        except SoftTimeLimitExceeded:
            services.synthetic_run_fail(
                run_id=run_id,
                reason="The run took longer than an hour and was stopped; the questions made so "
                "far are kept. Resume it to carry on from the next chunk.",
            )
            return "failed"
        except Exception as exc:
            # A clear failed state with the reason, not a run left "running" for ever.
            logger.exception("synthetic run %s stopped", run_id)
            services.synthetic_run_fail(
                run_id=run_id,
                reason=f"The run stopped on an unexpected error ({type(exc).__name__}); the "
                "questions made so far are kept.",
            )
            return "failed"
