"""The Celery app. Workers share the one data model through the ORM and take ids, not objects."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")

app = Celery("chatbot")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(
    [
        "chatbot.chat",
        "chatbot.knowledge",
        "evaluation",
        "evaluation.datasets",
        "evaluation.exports",
        "evaluation.retention",
        "observability",
    ]
)
app.autodiscover_tasks(["chatbot"], related_name="jobs")

app.conf.beat_schedule = {
    "turns-expire-stale": {"task": "chat.turns_expire_stale", "schedule": 300.0},
    "rollups-update": {"task": "observability.rollups_update", "schedule": 60.0},
    "rollups-recompute-recent": {
        "task": "observability.rollups_recompute_recent",
        "schedule": 86400.0,
    },
    "alerts-evaluate": {"task": "observability.alerts_evaluate", "schedule": 60.0},
    "turns-judge-sweep": {"task": "evaluation.turns_judge_sweep", "schedule": 600.0},
    # Cached answers of changed collections, should a queued clean-up have been lost.
    "answer-cache-retire": {"task": "knowledge.answer_cache_retire", "schedule": 3600.0},
    # Past knowledge-base versions older than KNOWLEDGE_VERSIONS_KEEP_DAYS, in every source.
    "knowledge-versions-prune": {"task": "knowledge.versions_prune", "schedule": 86400.0},
    # Retention policies (evaluation.retention): a daily pass; nothing goes until a policy has a
    # duration.
    "retention-run": {"task": "evaluation.retention_run", "schedule": 86400.0},
    # Jobs whose message was lost or whose worker died (chatbot.jobs): a fraction of the
    # JOBS_STALE_MINUTES window, so a stuck job waits little longer than that window.
    "jobs-requeue-stale": {"task": "jobs.requeue_stale", "schedule": 300.0},
    "reward-train-requeue-stale": {
        "task": "evaluation.reward_train_requeue_stale",
        "schedule": 300.0,
    },
}
