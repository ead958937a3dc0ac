"""Background jobs survive the queue: time limits on every task, a broker that is down when a job is
submitted (the row stays, the person is told), and the sweep that sends stuck jobs again. The
queue is the real test Redis; a test reads what was sent from the broker's own list."""

from __future__ import annotations

import base64
import json
import socket
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chatbot import jobs
from chatbot.celery import app
from chatbot.chat import services as chat_services
from chatbot.models import Collection, Dataset, Experiment, Export, Replay, Source, Turn
from evaluation.exports import reward
from evaluation.exports.tasks import reward_train_requeue_stale_task

QUEUE = "celery:default"  # the default queue's list, under the broker's key prefix

LONG_JOBS = [
    "knowledge.source_ingest",
    "evaluation.experiment_run",
    "evaluation.export_run",
    "evaluation.reward_train",
    "observability.replay_run",
    "evaluation.finetune_run",
    "evaluation.synthetic_run",
]


TEST_BROKER = settings.CELERY_BROKER_URL  # the test Redis, whatever a test points the app at


def _broker() -> redis.Redis:
    return redis.Redis.from_url(TEST_BROKER)


def queued() -> list[tuple[str, list[Any]]]:
    """(task name, args) of every message waiting on the default queue."""
    found = []
    for raw in _broker().lrange(QUEUE, 0, -1):
        message = json.loads(raw)
        body = json.loads(base64.b64decode(message["body"]))
        found.append((message["headers"]["task"], body[0]))
    return found


def _clean() -> None:
    _broker().delete(QUEUE)
    cache.delete(reward.STATE_KEY)
    # What the sweep remembers between runs (sent jobs, progress seen), in the test Redis.
    server = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    for key in server.scan_iter(match=cache.make_key("jobs:*")):
        server.delete(key)


@pytest.fixture(autouse=True)
def _empty_queue() -> Iterator[None]:
    _clean()
    yield
    _clean()


def _forget_connections() -> None:
    # The app keeps its pools of broker connections and producers, made from the URL it first
    # saw; forget them (as Celery itself does after a fork) so the next send uses the new URL.
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def broker_down(settings: Any) -> Iterator[str]:
    """The broker at a port nothing listens on, as when Redis is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    before = app.conf.broker_url
    settings.CELERY_BROKER_URL = url
    app.conf.broker_url = url
    _forget_connections()
    yield url
    app.conf.broker_url = before
    _forget_connections()


# --- limits --------------------------------------------------------------------------------------


def test_it_gives_every_task_a_time_limit_and_the_long_jobs_longer_ones() -> None:
    app.loader.import_default_modules()
    ours = [t for name, t in app.tasks.items() if not name.startswith("celery.")]
    assert ours, "the tasks are registered"
    for task in ours:
        assert task.soft_time_limit or app.conf.task_soft_time_limit, task.name
        assert task.time_limit or app.conf.task_time_limit, task.name
    for name in LONG_JOBS:
        task = app.tasks[name]
        assert task.soft_time_limit > app.conf.task_soft_time_limit, name
        assert task.time_limit > task.soft_time_limit, f"{name}: the soft limit comes first"


def test_it_keeps_a_running_job_invisible_longer_than_the_longest_hard_limit() -> None:
    longest = max(app.tasks[name].time_limit for name in LONG_JOBS)
    options = app.conf.broker_transport_options
    assert options["visibility_timeout"] > longest
    assert app.conf.task_acks_late, "late acks: a killed worker's job is delivered again"


def test_it_schedules_the_stale_job_sweeps() -> None:
    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    app.loader.import_default_modules()
    for name in ("jobs.requeue_stale", "evaluation.reward_train_requeue_stale"):
        assert name in scheduled and name in app.tasks


# --- a broker that is down at submission ---------------------------------------------------------


@pytest.mark.django_db
def test_it_reports_a_broker_that_is_down_instead_of_raising(broker_down: str) -> None:
    started = time.monotonic()
    with jobs.jobs_watch() as submitted:
        sent = jobs.job_submit("evaluation.export_run", 1)

    assert sent is False
    assert submitted.failed == 1 and not submitted.all_sent
    assert time.monotonic() - started < 10, "the person is not kept waiting"


def _messages(response: Any) -> list[tuple[str, str]]:
    return [(m.level_tag, m.message) for m in get_messages(response.wsgi_request)]


@pytest.mark.django_db(transaction=True)
def test_it_keeps_an_export_and_says_so_when_the_broker_is_down(
    client_as: Callable[[User], Client], rita: User, broker_down: str
) -> None:
    response = client_as(rita).post(reverse("review:export_new"), {"kind": "sft"})

    export = Export.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("review:export", args=[export.pk])
    assert export.status == Export.Status.QUEUED
    assert _messages(response) == [("warning", jobs.QUEUE_UNAVAILABLE)]


@pytest.mark.django_db(transaction=True)
def test_it_queues_an_export_on_the_broker_when_it_is_up(
    client_as: Callable[[User], Client], rita: User
) -> None:
    response = client_as(rita).post(reverse("review:export_new"), {"kind": "sft"})

    export = Export.objects.get()
    assert ("evaluation.export_run", [export.pk]) in queued()
    assert [level for level, _ in _messages(response)] == ["success"]


@pytest.mark.django_db(transaction=True)
def test_it_keeps_a_reingest_request_and_says_so_when_the_broker_is_down(
    client_as: Callable[[User], Client], adam: User, broker_down: str
) -> None:
    source = _source(status=Source.Status.DONE)
    source.last_ingested_at = timezone.now()
    source.save()
    url = reverse("knowledge:source_action", args=[source.pk, "reingest"])

    response = client_as(adam).post(url)

    assert response.status_code == 302
    assert _messages(response) == [("warning", jobs.QUEUE_UNAVAILABLE)]
    source.refresh_from_db()
    assert source.log[-1]["message"] == "Re-ingest queued."


@pytest.mark.django_db(transaction=True)
def test_it_says_a_rejudge_did_not_start_when_the_broker_is_down(
    client_as: Callable[[User], Client], adam: User, broker_down: str
) -> None:
    response = client_as(adam).post(reverse("console:judges_rejudge"), {"days": "7"})

    assert response.status_code == 302
    [(level, message)] = _messages(response)
    assert level == "error" and "queue is unavailable" in message


# --- the sweep -----------------------------------------------------------------------------------


def _source(status: str = Source.Status.PENDING) -> Source:
    collection, _ = Collection.objects.get_or_create(name="Handbook")
    return Source.objects.create(
        collection=collection, kind=Source.Kind.PATH, location="/tmp/handbook", name="handbook",
        status=status,
    )  # fmt: skip


def _experiment(status: str = Experiment.Status.QUEUED) -> Experiment:
    dataset, _ = Dataset.objects.get_or_create(name="Golden questions")
    return Experiment.objects.create(name="run", dataset=dataset, dataset_version=1, status=status)


def _replay(user: User, status: str = Replay.Status.PENDING) -> Replay:
    conversation = chat_services.conversation_create(owner=user)
    turn = chat_services.turn_create(conversation=conversation, user_text="Is the VPN down?")
    Turn.objects.filter(pk=turn.pk).update(status=Turn.Status.DONE)
    return Replay.objects.create(created_by=user, source_turn=turn, status=status)


def _age(row: Any, minutes: int) -> None:
    type(row).objects.filter(pk=row.pk).update(
        created_at=timezone.now() - timedelta(minutes=minutes)
    )


@pytest.mark.django_db
def test_it_sends_again_every_kind_of_job_left_waiting(alice: User) -> None:
    stale = [
        ("knowledge.source_ingest", _source()),
        ("evaluation.experiment_run", _experiment()),
        ("evaluation.export_run", Export.objects.create(kind=Export.Kind.SFT)),
        ("observability.replay_run", _replay(alice)),
    ]
    for _, row in stale:
        _age(row, settings.JOBS_STALE_MINUTES + 1)
    fresh = Export.objects.create(kind=Export.Kind.DPO)

    sent = jobs.jobs_requeue_stale()

    assert sent == {
        "source": 1,
        "experiment": 1,
        "export": 1,
        "replay": 1,
        "extraction": 0,
        "finetune": 0,
        "synthetic": 0,
    }
    assert sorted(queued()) == sorted((task, [row.pk]) for task, row in stale)
    assert ("evaluation.export_run", [fresh.pk]) not in queued(), "a new job is left to its message"
    jobs.jobs_requeue_stale()
    assert len(queued()) == 4, "a slow queue does not get a copy of the same job every sweep"


@pytest.mark.django_db
def test_it_sends_again_a_reingest_whose_message_was_lost() -> None:
    source = _source(status=Source.Status.DONE)
    long_ago = timezone.now() - timedelta(minutes=settings.JOBS_STALE_MINUTES + 5)
    note = {"time": (long_ago + timedelta(minutes=1)).isoformat(), "message": "Re-ingest queued."}
    Source.objects.filter(pk=source.pk).update(last_ingested_at=long_ago, log=[note])
    ingested = _source(status=Source.Status.DONE)
    Source.objects.filter(pk=ingested.pk).update(name="other", last_ingested_at=timezone.now())

    jobs.jobs_requeue_stale()

    assert queued() == [("knowledge.source_ingest", [source.pk])]


@pytest.mark.django_db
def test_it_sends_again_every_kind_of_job_running_without_progress(
    alice: User, settings: Any
) -> None:
    settings.JOBS_STALE_MINUTES = 0
    running = [
        ("knowledge.source_ingest", _source(status=Source.Status.RUNNING)),
        ("evaluation.experiment_run", _experiment(status=Experiment.Status.RUNNING)),
        ("evaluation.export_run", Export.objects.create(kind="sft", status=Export.Status.RUNNING)),
        ("observability.replay_run", _replay(alice, status=Replay.Status.RUNNING)),
    ]
    moving = Export.objects.create(kind=Export.Kind.DPO, status=Export.Status.RUNNING)

    first = jobs.jobs_requeue_stale()
    Export.objects.filter(pk=moving.pk).update(rows_done=10)
    second = jobs.jobs_requeue_stale()

    assert set(first.values()) == {0}, "the first sighting only starts the clock"
    assert second == {
        "source": 1,
        "experiment": 1,
        "export": 1,
        "replay": 1,
        "extraction": 0,
        "finetune": 0,
        "synthetic": 0,
    }
    assert sorted(queued()) == sorted((task, [row.pk]) for task, row in running)


@pytest.mark.django_db
def test_it_leaves_a_job_whose_broker_is_down_for_the_next_sweep(broker_down: str) -> None:
    export = Export.objects.create(kind=Export.Kind.SFT)
    _age(export, settings.JOBS_STALE_MINUTES + 1)

    assert jobs.jobs_requeue_stale()["export"] == 0
    assert cache.get(f"jobs:resent:export:{export.pk}") is None, "the next sweep tries again"


@pytest.mark.django_db
def test_it_sends_again_a_reward_training_left_queued_or_abandoned(rita: User) -> None:
    long_ago = timezone.now().timestamp() - (settings.JOBS_STALE_MINUTES + 1) * 60
    state = {"token": "t1", "status": "queued", "since": long_ago, "user_id": rita.pk}
    cache.set(reward.STATE_KEY, state)

    assert reward_train_requeue_stale_task() is True
    assert queued() == [("evaluation.reward_train", ["t1", rita.pk])]

    limit = app.tasks["evaluation.reward_train"].time_limit
    cache.set(reward.STATE_KEY, {**state, "status": "running", "since": time.time() - 60})
    assert reward_train_requeue_stale_task() is False, "a training within its limit is alive"
    cache.set(reward.STATE_KEY, {**state, "status": "running", "since": time.time() - limit - 1})
    assert reward_train_requeue_stale_task() is True
    assert len(queued()) == 2


@pytest.fixture
def other_session() -> Iterator[Any]:
    """A second Postgres session, as another worker holding a job's lock would have."""
    import psycopg
    from django.db import connection

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as other:
        yield other


@pytest.mark.django_db(transaction=True)
def test_it_runs_no_second_copy_of_a_job_another_worker_is_running(other_session: Any) -> None:
    """The sweep may re-send a job whose worker is slow rather than dead: the copy finds the
    job's lock held and stops without touching it; once the first run ends, it runs."""
    from chatbot.knowledge.tasks import source_ingest_task
    from evaluation.datasets.tasks import experiment_run_task
    from evaluation.exports.tasks import export_run_task
    from evaluation.finetune.tasks import finetune_run_task
    from evaluation.synthetic.tasks import synthetic_run_task
    from observability.tasks import replay_run_task

    collection = Collection.objects.create(name="Locked")
    source = Source.objects.create(
        collection=collection, name="docs", kind="path", location="/x", enabled=False
    )
    cases = [
        ("source", source.pk, source_ingest_task),
        ("experiment", 987_654, experiment_run_task),
        ("export", 987_654, export_run_task),
        ("replay", 987_654, replay_run_task),
        ("finetune", 987_654, finetune_run_task),
        ("synthetic", 987_654, synthetic_run_task),
    ]
    for kind, pk, task in cases:
        space = zlib.crc32(kind.encode()) & 0x7FFFFFFF
        other_session.execute("SELECT pg_advisory_lock(%s, %s)", [space, pk])
        try:
            assert task(pk) == jobs.ALREADY_RUNNING, kind
        finally:
            other_session.execute("SELECT pg_advisory_unlock(%s, %s)", [space, pk])
        assert task(pk) != jobs.ALREADY_RUNNING, kind
    # The copy that stopped wrote nothing; the run after it did (a disabled source says so).
    assert [n["message"] for n in Source.objects.get(pk=source.pk).log] == [
        "The source is disabled; nothing was ingested."
    ]
