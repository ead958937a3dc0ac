"""A real Celery worker, over the test Redis, runs our tasks against the test database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery.contrib.testing.worker import TestWorkController
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from chatbot.celery import app
from chatbot.chat import services
from chatbot.chat.tasks import turns_expire_stale
from chatbot.models import Turn

pytestmark = pytest.mark.django_db(transaction=True)


def _turn(user: User, *, status: str, age: timedelta) -> Turn:
    conversation = services.conversation_create(owner=user)
    turn = services.turn_create(conversation=conversation, user_text="Is the VPN down?")
    # created_at is auto_now_add: age the row the way a dead process would have left it.
    Turn.objects.filter(pk=turn.pk).update(status=status, created_at=timezone.now() - age)
    return turn


def test_it_expires_stale_turns_in_a_real_worker(alice: User, worker: TestWorkController) -> None:
    stale = _turn(alice, status=Turn.Status.STREAMING, age=timedelta(hours=1))
    fresh = _turn(alice, status=Turn.Status.STREAMING, age=timedelta(seconds=5))

    expired = turns_expire_stale.delay().get(timeout=60)

    assert expired == 1
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.status == Turn.Status.FAILED
    assert stale.error == services.STALE_MESSAGE
    assert stale.finished_at is not None
    assert fresh.status == Turn.Status.STREAMING, "a turn still streaming is left alone"


def test_it_schedules_the_stale_turn_sweep_in_beat() -> None:
    tasks = {entry["task"] for entry in app.conf.beat_schedule.values()}

    assert "chat.turns_expire_stale" in tasks
    assert "chat.turns_expire_stale" in app.tasks


def test_every_process_sends_tasks_to_the_configured_broker() -> None:
    """A web or manage.py process that never imports chatbot.celery itself must still queue to
    our Redis, not to Celery's default broker on localhost (tasks would vanish there)."""
    import subprocess
    import sys

    code = (
        "import django; django.setup();"
        "from chatbot.knowledge.tasks import source_ingest_task as t;"
        "print(t.app.main, t.app.conf.broker_url)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert out == ["chatbot", settings.CELERY_BROKER_URL]
