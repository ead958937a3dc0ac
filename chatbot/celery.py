"""The Celery app. Workers share the one data model through the ORM and take ids, not objects."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")

app = Celery("chatbot")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["chatbot.chat", "evaluation", "observability"])

app.conf.beat_schedule = {
    "turns-expire-stale": {"task": "chat.turns_expire_stale", "schedule": 300.0},
}
