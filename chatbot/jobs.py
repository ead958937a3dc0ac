"""Handing jobs to the background queue, and picking up the jobs it lost.

A long job (an ingestion, an experiment, an export, a replay, an extraction run, a fine-tuning
job, a synthetic-question run, a reward-model training) is a row saved first and a Celery message
sent once that row commits (house rule 4). Two things can go wrong after the row is saved, and
this module covers both:

- The broker is down when the message is sent. `job_submit` never raises: it logs, returns False
  and counts the failure in the surrounding `jobs_watch()` block, so the view that saved the row
  tells the person `QUEUE_UNAVAILABLE` instead of answering with a 500. The row stays saved.
- The message is lost later (the broker restarted empty), or the worker died mid-job. The sweep
  (`jobs_requeue_stale`, in Celery beat) sends again every job that has waited for a worker, or
  run without any progress, for `JOBS_STALE_MINUTES`. Tasks are idempotent and resume, so a job
  sent twice is finished once.

This module is part of the ground layer: it knows the rows (chatbot.models) and names the tasks
by their Celery names, so it imports no feature. The reward model's training is not a row (its
state is in the cache, owned by evaluation.exports.reward), so evaluation sweeps it itself with
`job_resubmit_once`.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from celery import current_app, shared_task
from celery.app.task import Task
from django.conf import settings
from django.contrib import messages
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import DateTimeField, F, Func, IntegerField, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.functions import MD5, Coalesce
from django.http import HttpRequest
from django.utils import timezone
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from chatbot.models import (
    Experiment,
    Export,
    ExtractionRun,
    FineTuneJob,
    Replay,
    Source,
    SyntheticRun,
)

logger = logging.getLogger(__name__)

QUEUE_UNAVAILABLE = (
    "Saved; the background queue is unavailable right now, so it will start automatically "
    "when the queue is back."
)
# kombu wraps the broker's connection errors in OperationalError; the others are belt and braces
# for errors raised before kombu's wrapper is reached.
SUBMIT_ERRORS: tuple[type[Exception], ...] = (OperationalError, RedisError, OSError)
# A person is waiting on the page: try the broker three times within about a second, not
# Celery's default policy, then leave the job to the sweep.
SUBMIT_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 1,
}
PROGRESS_TTL_S = 24 * 3600  # a running job's last seen progress; a finished job's simply expires


@dataclass
class Submissions:
    """What happened to the jobs submitted inside one `jobs_watch()` block."""

    sent: int = 0
    failed: int = 0

    @property
    def all_sent(self) -> bool:
        return self.failed == 0


_watch: ContextVar[Submissions | None] = ContextVar("jobs_watch", default=None)


@contextmanager
def jobs_watch() -> Iterator[Submissions]:
    """Count the submissions made inside the block, on-commit ones included: a view wraps the
    service call that saves a job, then tells the person whether the job is on its way."""
    submissions = Submissions()
    token = _watch.set(submissions)
    try:
        yield submissions
    finally:
        _watch.reset(token)


def job_submit(task: Task | str, *args: Any) -> bool:
    """Send a task (or a task name) with its arguments; False when the broker cannot take it."""
    name = task if isinstance(task, str) else task.name
    # Nobody waits on a job's return value (its row shows how it went), so the sender does not
    # subscribe to it on the result backend either: one Redis round trip less, and a Redis that
    # is down fails in kombu's publish, as OperationalError.
    options: dict[str, Any] = {
        "retry": True,
        "retry_policy": SUBMIT_RETRY_POLICY,
        "ignore_result": True,
    }
    try:
        if isinstance(task, str):
            current_app.send_task(task, args=args, **options)
        else:
            task.apply_async(args=args, **options)
    except SUBMIT_ERRORS as exc:
        logger.warning("could not queue %s%r (the sweep will send it again): %s", name, args, exc)
        sent = False
    else:
        sent = True
    watch = _watch.get()
    if watch is not None:
        if sent:
            watch.sent += 1
        else:
            watch.failed += 1
    return sent


def job_submit_on_commit(task: Task | str, *args: Any) -> None:
    """Submit once the surrounding transaction commits: the worker must find the row."""
    transaction.on_commit(partial(job_submit, task, *args))


def job_resubmit_once(key: str, task: Task | str, *args: Any) -> bool:
    """Send a stale job again, at most once per JOBS_STALE_MINUTES for the same key, so a sweep
    every few minutes does not pile copies of a job on a queue that is merely slow."""
    if not cache.add(f"jobs:resent:{key}", 1, timeout=_stale_window().total_seconds() or 1):
        return False
    if job_submit(task, *args):
        return True
    cache.delete(f"jobs:resent:{key}")  # try again on the next sweep
    return False


# --- the sweep -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobKind:
    name: str
    task: str
    # Rows waiting for a worker since before the cutoff (their message may be lost).
    waiting: Callable[[datetime], QuerySet[Any]]
    # Rows a worker (or a management command) is on.
    running: Callable[[], QuerySet[Any]]
    # Fields that change while the job makes progress.
    progress: tuple[str, ...]


def _last_note() -> RawSQL:
    # A source has no updated_at; each step of an ingestion appends a timed note to its log.
    return RawSQL("(chatbot_source.log -> -1 ->> 'time')::timestamptz", [], DateTimeField())


def _sources_waiting(cutoff: datetime) -> QuerySet[Source]:
    """Never started, or re-ingest asked for (a note newer than the last run) and not begun."""
    return (
        Source.objects.filter(enabled=True)
        .annotate(noted=Coalesce(_last_note(), F("created_at")))
        .filter(noted__lt=cutoff)
        .filter(
            Q(status=Source.Status.PENDING)
            | Q(
                status__in=[Source.Status.DONE, Source.Status.FAILED],
                last_ingested_at__lt=F("noted"),
            )
        )
    )


def _sources_running() -> QuerySet[Source]:
    return Source.objects.filter(status=Source.Status.RUNNING).annotate(
        notes=Func(F("log"), function="jsonb_array_length", output_field=IntegerField())
    )


def _finetune_running() -> QuerySet[FineTuneJob]:
    """A fine-tuning job may rightly run for hours: what counts is that it moves. A step, a loss
    point or a log line (loading the model, a hosted job's event) is progress; the log keeps only
    its newest characters, so its digest, not its length, tells that it moved."""
    return FineTuneJob.objects.filter(status=FineTuneJob.Status.RUNNING).annotate(
        points=Func(F("losses"), function="jsonb_array_length", output_field=IntegerField()),
        log_digest=MD5("log"),
    )


def _synthetic_waiting(cutoff: datetime) -> QuerySet[SyntheticRun]:
    return SyntheticRun.objects.filter(
        status=SyntheticRun.Status.QUEUED, started_at__isnull=True, created_at__lt=cutoff
    )


def _synthetic_running() -> QuerySet[SyntheticRun]:
    """Running, or resumed: a resumed run is queued again with its first start kept and no
    time of the resume, so the sweep's own clock judges it (its status is part of the mark)."""
    return SyntheticRun.objects.filter(
        Q(status=SyntheticRun.Status.RUNNING)
        | Q(status=SyntheticRun.Status.QUEUED, started_at__isnull=False)
    )


# Staleness of a waiting row is judged from its created_at (Experiment, Export, Replay and the
# others have no queued-at: they are created queued), and of a running row from progress the sweep
# itself saw, because Export has no started_at and no kind records when it last made progress.
# A re-sent copy of a job still running elsewhere finds the job's `job_exclusive` lock and stops.
KINDS = (
    JobKind(
        "source",
        "knowledge.source_ingest",
        _sources_waiting,
        _sources_running,
        ("documents_total", "documents_done", "chunks_done", "notes"),
    ),
    JobKind(
        "experiment",
        "evaluation.experiment_run",
        lambda cutoff: Experiment.objects.filter(
            status=Experiment.Status.QUEUED, created_at__lt=cutoff
        ),
        lambda: Experiment.objects.filter(status=Experiment.Status.RUNNING),
        ("items_done",),
    ),
    JobKind(
        "export",
        "evaluation.export_run",
        lambda cutoff: Export.objects.filter(status=Export.Status.QUEUED, created_at__lt=cutoff),
        lambda: Export.objects.filter(status=Export.Status.RUNNING),
        ("rows_total", "rows_done"),
    ),
    JobKind(
        "replay",
        "observability.replay_run",
        lambda cutoff: Replay.objects.filter(status=Replay.Status.PENDING, created_at__lt=cutoff),
        lambda: Replay.objects.filter(status=Replay.Status.RUNNING),
        ("completed",),
    ),
    JobKind(
        "extraction",
        "chat.extraction_run",
        lambda cutoff: ExtractionRun.objects.filter(
            status=ExtractionRun.Status.QUEUED, created_at__lt=cutoff
        ),
        lambda: ExtractionRun.objects.filter(status=ExtractionRun.Status.RUNNING),
        ("done",),
    ),
    JobKind(
        "finetune",
        "evaluation.finetune_run",
        # A queued job an admin cancels becomes cancelled at once, so it is not waiting.
        lambda cutoff: FineTuneJob.objects.filter(
            status=FineTuneJob.Status.QUEUED, created_at__lt=cutoff
        ),
        _finetune_running,
        ("steps_done", "steps_total", "points", "log_digest"),
    ),
    JobKind(
        "synthetic",
        "evaluation.synthetic_run",
        _synthetic_waiting,
        _synthetic_running,
        ("status", "chunks_done"),
    ),
)


def _stale_window() -> timedelta:
    return timedelta(minutes=settings.JOBS_STALE_MINUTES)


def _running_stale(kind: JobKind, pk: int, mark: list[Any], now: float) -> bool:
    """True when the row's progress has not moved for the stale window. The first sighting only
    starts the clock: a sweep that cannot tell how long a job has been stuck waits a window."""
    key = f"jobs:progress:{kind.name}:{pk}"
    seen = cache.get(key)
    if not isinstance(seen, dict) or seen.get("mark") != mark:
        cache.set(key, {"mark": mark, "since": now}, PROGRESS_TTL_S)
        return False
    if now - float(seen["since"]) < _stale_window().total_seconds():
        return False
    # Restart the clock, so a job sent again is given a whole window to show progress.
    cache.set(key, {"mark": mark, "since": now}, PROGRESS_TTL_S)
    return True


def jobs_requeue_stale() -> dict[str, int]:
    """Send again the jobs of every kind that are stuck; returns how many of each were sent."""
    now = timezone.now()
    clock = time.time()
    sent: dict[str, int] = {}
    for kind in KINDS:
        count = 0
        for pk in kind.waiting(now - _stale_window()).values_list("pk", flat=True):
            count += job_resubmit_once(f"{kind.name}:{pk}", kind.task, pk)
        for row in kind.running().values("pk", *kind.progress):
            if _running_stale(kind, row["pk"], [row[f] for f in kind.progress], clock):
                count += job_submit(kind.task, row["pk"])
        if count:
            logger.warning("re-queued %s stuck %s job(s)", count, kind.name)
        sent[kind.name] = count
    return sent


@shared_task(name="jobs.requeue_stale")
def jobs_requeue_stale_task() -> dict[str, int]:
    return jobs_requeue_stale()


@contextmanager
def job_exclusive(kind: str, pk: int) -> Iterator[bool]:
    """Yield True when this process may run job `kind` #`pk`, holding a Postgres advisory lock
    (per session, so on every replica) until the block ends; False when another copy holds it.

    The sweep re-sends a job that shows no progress, and a slow step can look like a dead worker:
    the second copy then finds the lock taken and stops instead of writing the same rows twice.
    The lock dies with the connection, so a killed worker never leaves a job locked."""
    space = zlib.crc32(kind.encode()) & 0x7FFFFFFF
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [space, pk])
        row = cursor.fetchone()
    held = bool(row and row[0])
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [space, pk])


ALREADY_RUNNING = "already running"


def jobs_notify(request: HttpRequest, submitted: Submissions, started: str) -> None:
    """Tell the person the job started, or that it is saved and waits for the queue."""
    if submitted.all_sent:
        messages.success(request, started)
    else:
        messages.warning(request, QUEUE_UNAVAILABLE)
