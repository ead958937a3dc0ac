"""The Celery app. Workers share the one data model through the ORM and take ids, not objects."""

import os

from celery import Celery
from celery.schedules import crontab

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
        "evaluation.finetune",
        "evaluation.retention",
        "evaluation.synthetic",
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
    # Judges' agreement with the humans, for flagging; each review also queues it.
    "judge-trust-refresh": {"task": "evaluation.judge_trust_refresh", "schedule": 900.0},
    # The weekly report of the week just ended (and missing past weeks), Mondays at 06:00 in
    # Celery's time zone (UTC unless CELERY_TIMEZONE says otherwise; observability.weekly).
    "weekly-reports": {
        "task": "observability.weekly_reports_run",
        "schedule": crontab(minute=0, hour=6, day_of_week="mon"),
    },
}
