"""Background jobs of the observability area. Tasks take ids or nothing, and are safe to run twice."""

from __future__ import annotations

from celery import shared_task

from chatbot.jobs import ALREADY_RUNNING, job_exclusive
from observability import services, weekly

DELIVERY_ATTEMPTS = 3
WEEKLY_DELIVERY_ATTEMPTS = 6


@shared_task(name="observability.rollups_update")
def rollups_update_task() -> int:
    """Recompute the hours touched since the last pass (every minute)."""
    return services.rollups_update().hours


@shared_task(name="observability.rollups_recompute_recent")
def rollups_recompute_recent_task(days: int = 7) -> int:
    """Recompute the last week (daily), catching late edits and deletions."""
    return services.rollups_recompute_recent(days=days)


@shared_task(name="observability.alerts_evaluate")
def alerts_evaluate_task() -> list[int]:
    """Check every enabled alert rule (every minute); returns the firings recorded."""
    return [firing.pk for firing in services.alerts_evaluate()]


@shared_task(
    name="observability.alert_deliver",
    autoretry_for=(services.AlertDeliveryFailed,),
    max_retries=DELIVERY_ATTEMPTS - 1,
    retry_backoff=5,
    retry_backoff_max=60,
)
def alert_deliver_task(firing_id: int) -> bool:
    firing = services.alert_deliver(firing_id=firing_id)
    return bool(firing and firing.delivered)


@shared_task(name="observability.replay_run")
def replay_run_task(replay_id: int) -> str:
    with job_exclusive("replay", replay_id) as mine:
        if not mine:
            return ALREADY_RUNNING
        replay = services.replay_run(replay_id=replay_id)
        return replay.status if replay else "missing"


@shared_task(name="observability.weekly_reports_run")
def weekly_reports_run_task(backfill: int | None = None) -> list[int]:
    """Mondays: the week just ended, and missing reports of past weeks (observability.weekly)."""
    with job_exclusive("weekly_reports", 0) as mine:
        if not mine:
            return []
        return weekly.weekly_reports_run(backfill=backfill)


@shared_task(
    name="observability.weekly_report_deliver",
    autoretry_for=(weekly.WeeklyReportDeliveryFailed,),
    # Six attempts, backing off from 5 s to 10 minutes: a weekly post can wait out a short outage.
    max_retries=WEEKLY_DELIVERY_ATTEMPTS - 1,
    retry_backoff=5,
    retry_backoff_max=600,
)
def weekly_report_deliver_task(report_id: int) -> bool:
    report = weekly.weekly_report_deliver(report_id=report_id)
    return bool(report and report.delivered_at)
