"""The weekly report: one ISO week of production (Monday to Sunday in the site's time zone, i.e.
settings.TIME_ZONE) against the week before, stored as a `WeeklyReport` and posted to a webhook.

What it holds (`figures`, plain JSON):
- `turns`: the week's finished production turns as the dashboard counts them (its hourly
  rollups, `observability.rollups`): logged, judged, flagged for review, judge pass rate, review
  grades, thumbs, cost, latency percentiles. Turns are counted in the week they were asked;
- `work`: what people and jobs did during the week, by when it happened: reviews submitted and
  corrected, dataset items added, training exports written, fine-tuning jobs finished (the rows
  they trained on, the endpoints they registered), fine-tuned endpoints promoted to the default, prompts published;
- `changes`: each headline figure this week, the week before, and the change;
- `endpoints` and `prompts` in use (turns, share, cost), `judges` (each judge's Cohen's kappa
  against human reviews and the number of reviews it rests on, from evaluation through
  `chatbot.hooks.weekly_report_sections`), and `drift` (retrieval per collection,
  `observability.drift`).

Computing a week first recomputes the rollup hours of both weeks from the raw tables, so a report
is exactly what the tables said when it was computed; computing it again updates its row.
Rollup hours are UTC hours: in a zone whose offset is not a whole number of hours, a week's
edges are off by that fraction of an hour.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chatbot.models import Turn, WeeklyReport
from chatbot.telemetry.audit import audit_record
from observability.rollups import hours_recompute
from observability.weekly_figures import (
    WEEK,
    NotAFinishedWeek,
    last_finished_week,
    monday_of,
    week_bounds,
    week_figures,
)
from observability.weekly_text import summary_text

__all__ = ["NotAFinishedWeek", "last_finished_week", "monday_of", "week_bounds"]

logger = logging.getLogger(__name__)


# --- storing and posting ---------------------------------------------------------------------------


def _hours(start: datetime, end: datetime) -> list[datetime]:
    """Every UTC hour overlapping [start, end)."""
    first = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours, hour = [], first
    while hour < end:
        hours.append(hour)
        hour += timedelta(hours=1)
    return hours


def weekly_report_compute(*, week_start: date, now: datetime | None = None) -> WeeklyReport:
    """Compute (or compute again) one finished week's report. Safe to run twice: one row a week."""
    if week_start.weekday() != 0 or week_start > last_finished_week(now):
        raise NotAFinishedWeek(f"{week_start} is not the Monday of a week that has ended.")
    start, end = week_bounds(week_start)
    # Late reviews, thumbs or deletions since the rollup pass last saw these hours count too.
    hours_recompute(hours=_hours(start - WEEK, end))
    figures = week_figures(week_start)
    with transaction.atomic():
        report, _ = WeeklyReport.objects.select_for_update().update_or_create(
            week_start=week_start,
            defaults={
                "time_zone": settings.TIME_ZONE,
                "figures": figures,
                "summary": summary_text(figures),
                "computed_at": timezone.now(),
            },
        )
    return report


def weeks_missing(*, latest: date, weeks: int) -> list[date]:
    """Of the `weeks` weeks ending with `latest`, those with no report, since the first
    production turn (the product's first week is as far back as it goes)."""
    first = (
        Turn.objects.filter(is_replay=False)
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    if first is None or weeks <= 0:
        return []
    earliest = monday_of(timezone.localtime(first).date())
    wanted = [latest - WEEK * k for k in range(weeks)]
    have = set(
        WeeklyReport.objects.filter(week_start__in=wanted).values_list("week_start", flat=True)
    )
    return sorted(w for w in wanted if w >= earliest and w not in have)


class WeeklyReportDeliveryFailed(Exception):
    """The webhook did not accept the report; the task retries."""


def payload(report: WeeklyReport) -> dict[str, Any]:
    return {
        "report": "weekly",
        "week": report.label,
        "week_start": report.week_start.isoformat(),
        "week_end": report.week_end.isoformat(),
        "time_zone": report.time_zone,
        "computed_at": report.computed_at.isoformat(),
        "text": report.summary,
        "figures": report.figures,
    }


def weekly_report_deliver(*, report_id: int) -> WeeklyReport | None:
    """POST the report to WEEKLY_REPORT_WEBHOOK_URL as JSON. Safe to run twice: a posted report
    is left alone, and the row stays locked while posting so two runs never both post."""
    import httpx

    url = settings.WEEKLY_REPORT_WEBHOOK_URL
    error = ""
    with transaction.atomic():
        report = WeeklyReport.objects.select_for_update().filter(pk=report_id).first()
        if report is None or not url or report.delivery == WeeklyReport.Delivery.DELIVERED:
            return report
        try:
            response = httpx.post(
                url,
                json=payload(report),
                timeout=settings.WEEKLY_REPORT_WEBHOOK_TIMEOUT_S,
                follow_redirects=False,
            )
            if response.status_code >= 300:
                error = f"The webhook answered HTTP {response.status_code}."
        except httpx.HTTPError as exc:
            error = f"The webhook could not be reached ({type(exc).__name__}: {exc})."
        report.delivery_attempts += 1
        report.delivery_error = error
        report.delivery = WeeklyReport.Delivery.FAILED if error else WeeklyReport.Delivery.DELIVERED
        report.delivered_at = None if error else timezone.now()
        report.save(
            update_fields=["delivery", "delivery_attempts", "delivery_error", "delivered_at"]
        )
    if error:
        raise WeeklyReportDeliveryFailed(error)
    return report


def weekly_reports_run(*, now: datetime | None = None, backfill: int | None = None) -> list[int]:
    """The Monday job: the week just ended (computed again if it exists, and posted once when a
    webhook is set), then any of the past `backfill` weeks without a report (not posted: a
    channel should not get two months of reports on the day this is switched on)."""
    latest = last_finished_week(now)
    weeks = settings.WEEKLY_REPORT_BACKFILL_WEEKS if backfill is None else backfill
    done = [weekly_report_compute(week_start=latest, now=now)]
    done += [
        weekly_report_compute(week_start=week, now=now)
        for week in weeks_missing(latest=latest - WEEK, weeks=weeks - 1)
    ]
    report = done[0]
    if settings.WEEKLY_REPORT_WEBHOOK_URL and report.delivery in {
        WeeklyReport.Delivery.NONE,
        WeeklyReport.Delivery.FAILED,
    }:
        WeeklyReport.objects.filter(pk=report.pk).update(delivery=WeeklyReport.Delivery.SENDING)
        from observability.tasks import weekly_report_deliver_task

        transaction.on_commit(lambda: weekly_report_deliver_task.delay(report.pk), robust=True)
    return [r.pk for r in done]


# --- admin actions (audited) -----------------------------------------------------------------------


def weekly_report_recompute(*, report: WeeklyReport) -> WeeklyReport:
    """An admin computes a stored week again (late reviews, a fixed rollup); the row is updated."""
    fresh = weekly_report_compute(week_start=report.week_start)
    audit_record("weekly_report.recompute", target=fresh, details={"week": fresh.label})
    return fresh


def weekly_report_post(*, report: WeeklyReport) -> WeeklyReport:
    """An admin posts a report to the webhook now (again, if posting failed): one attempt, its
    outcome recorded on the report either way."""
    if not settings.WEEKLY_REPORT_WEBHOOK_URL:
        raise ValueError("No webhook is set: set WEEKLY_REPORT_WEBHOOK_URL to post reports.")
    WeeklyReport.objects.filter(pk=report.pk).exclude(
        delivery=WeeklyReport.Delivery.DELIVERED
    ).update(delivery=WeeklyReport.Delivery.SENDING)
    # A failure is recorded on the report, which the page shows.
    with contextlib.suppress(WeeklyReportDeliveryFailed):
        weekly_report_deliver(report_id=report.pk)
    report.refresh_from_db()
    audit_record(
        "weekly_report.post",
        target=report,
        details={"week": report.label, "outcome": report.get_delivery_display()},
    )
    return report
