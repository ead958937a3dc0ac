"""Background jobs for the flywheel's outputs. Tasks take ids and are safe to run twice."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from chatbot.jobs import ALREADY_RUNNING, job_exclusive, job_resubmit_once
from evaluation.exports import reward, services


@shared_task(name="evaluation.export_run")
def export_run_task(export_id: int) -> str:
    """Write one export; a redelivered task rewrites the file from the start."""
    with job_exclusive("export", export_id) as mine:
        if not mine:
            return ALREADY_RUNNING
        export = services.export_run(export_id=export_id)
        return "missing" if export is None else export.status


@shared_task(name="evaluation.reward_train")
def reward_train_task(token: str, user_id: int | None) -> str:
    """Train the reward model once per request (the token); a second delivery does nothing."""
    user = User.objects.filter(pk=user_id).first() if user_id else None
    return str(reward.reward_train_run(token=token, user=user).get("status", "stale"))


@shared_task(name="evaluation.reward_train_requeue_stale")
def reward_train_requeue_stale_task() -> bool:
    """Send the training again when its message was lost (queued for JOBS_STALE_MINUTES) or its
    worker died (running past the task's hard time limit, which would have ended it)."""
    state = reward.reward_training_state()
    if state is None or state.get("status") not in {"queued", "running"}:
        return False
    age = timezone.now().timestamp() - float(state.get("since", 0))
    if state["status"] == "queued":
        limit = settings.JOBS_STALE_MINUTES * 60
    else:
        limit = settings.CELERY_TASK_ANNOTATIONS[reward_train_task.name]["time_limit"]
    if age < limit:
        return False
    key = f"reward:{state.get('token')}:{state['status']}"
    return job_resubmit_once(key, reward_train_task, state.get("token"), state.get("user_id"))
