"""The periodic passes that keep the rollups current: each recomputes the hours something changed
in since the last successful pass (`RollupRun.until`), and a daily pass redoes the last week so
late edits (a deleted conversation, a judge retried much later) are caught too."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.utils import timezone

from chatbot.models import RollupRun
from observability.rollups import hours_recompute, hours_touched

logger = logging.getLogger(__name__)

KEEP_RUNS = timedelta(days=2)


def rollups_update(*, now: datetime | None = None) -> RollupRun:
    """One incremental pass. Safe to run twice: a pass recomputes whole hours from the raw tables."""
    until = now or timezone.now()
    last = RollupRun.objects.filter(status=RollupRun.Status.DONE).order_by("-until").first()
    run = RollupRun.objects.create(since=last.until if last else None, until=until)
    started = time.perf_counter()
    try:
        run.hours = hours_recompute(hours=hours_touched(since=run.since, until=until))
    except Exception as exc:
        run.status, run.error = RollupRun.Status.FAILED, f"{type(exc).__name__}: {exc}"
        logger.exception("rollup pass failed")
    else:
        run.status = RollupRun.Status.DONE
    run.duration_ms = (time.perf_counter() - started) * 1000
    run.save(update_fields=["status", "error", "hours", "duration_ms"])
    # The latest successful pass stays: it is where the next one starts.
    keep = [run.pk] + ([last.pk] if last else [])
    RollupRun.objects.filter(started_at__lt=until - KEEP_RUNS).exclude(pk__in=keep).delete()
    return run


def rollups_recompute_recent(*, days: int = 7, now: datetime | None = None) -> int:
    """Recompute every hour of the last `days` days."""
    end = (now or timezone.now()).replace(minute=0, second=0, microsecond=0)
    hours = [end - timedelta(hours=h) for h in range(days * 24 + 1)]
    return hours_recompute(hours=hours)
