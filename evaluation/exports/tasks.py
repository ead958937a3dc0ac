"""Background jobs for the flywheel's outputs. Tasks take ids and are safe to run twice."""

from __future__ import annotations

from celery import shared_task
from django.contrib.auth.models import User

from evaluation.exports import reward, services


@shared_task(name="evaluation.export_run")
def export_run_task(export_id: int) -> str:
    """Write one export; a redelivered task rewrites the file from the start."""
    export = services.export_run(export_id=export_id)
    return "missing" if export is None else export.status


@shared_task(name="evaluation.reward_train")
def reward_train_task(token: str, user_id: int | None) -> str:
    """Train the reward model once per request (the token); a second delivery does nothing."""
    user = User.objects.filter(pk=user_id).first() if user_id else None
    return str(reward.reward_train_run(token=token, user=user).get("status", "stale"))
