"""The Django project package and the core app that owns the one data model.

The Celery app is imported here so that every process (daphne, manage.py, workers) sends
`shared_task`s through it, to the configured broker, not to Celery's default one.
"""

from chatbot.celery import app as celery_app

__all__ = ("celery_app",)
