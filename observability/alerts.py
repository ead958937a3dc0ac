"""Alerts: thresholds an admin sets on production metrics, checked every minute over a window of
raw turns (fresh to the minute, unlike the hourly rollups; a window is small enough to read).

A rule fires when its metric goes above the threshold: the firing is recorded once per crossing,
the dashboard shows a banner while it lasts, and the webhook (if any) gets a JSON POST. When the
metric falls back, the rule returns to OK and the firing gets its `resolved_at`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q, Sum
from django.utils import timezone

from chatbot.models import AlertFiring, AlertRule, ReviewItem, Turn

logger = logging.getLogger(__name__)

FINISHED = (Turn.Status.DONE, Turn.Status.FAILED, Turn.Status.CANCELLED)
# Absolute spend needs no minimum number of turns; rates and percentiles do.
NEEDS_TURNS = {
    AlertRule.Metric.LATENCY_P95,
    AlertRule.Metric.TTFT_P95,
    AlertRule.Metric.ERROR_RATE,
    AlertRule.Metric.FLAGGED_SHARE,
}


class AlertDeliveryFailed(Exception):
    """The webhook did not accept the alert; the task retries."""


@dataclass(frozen=True)
class Reading:
    value: float | None
    turns: int


def _p95(column: str, start: datetime, end: datetime) -> float | None:
    turn = connection.ops.quote_name(Turn._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT percentile_disc(0.95) WITHIN GROUP (ORDER BY {column}) FROM {turn}"  # noqa: S608
            " WHERE NOT is_replay AND status = %s AND created_at >= %s AND created_at < %s"
            f" AND {column} IS NOT NULL",
            [Turn.Status.DONE, start, end],
        )
        row = cursor.fetchone()
    return float(row[0]) if row and row[0] is not None else None


def metric_read(rule: AlertRule, *, now: datetime) -> Reading:
    """The rule's metric over its window ending `now`, from production turns only."""
    start = now - timedelta(minutes=rule.window_minutes)
    turns = Turn.objects.filter(
        is_replay=False, status__in=FINISHED, created_at__gte=start, created_at__lt=now
    )
    counts = turns.aggregate(
        n=Count("pk"),
        failed=Count("pk", filter=Q(status=Turn.Status.FAILED)),
        cost=Sum("cost"),
        flagged=Count("pk", filter=Q(Exists(ReviewItem.objects.filter(turn=OuterRef("pk"))))),
    )
    n = counts["n"]
    metric = rule.metric
    value: float | None
    if metric == AlertRule.Metric.LATENCY_P95:
        value = _p95("total_ms", start, now)
    elif metric == AlertRule.Metric.TTFT_P95:
        value = _p95("ttft_ms", start, now)
    elif metric == AlertRule.Metric.ERROR_RATE:
        value = counts["failed"] / n if n else None
    elif metric == AlertRule.Metric.COST_PER_DAY:
        value = float(counts["cost"] or 0) * (24 * 60) / rule.window_minutes
    elif metric == AlertRule.Metric.FLAGGED_SHARE:
        value = counts["flagged"] / n if n else None
    else:
        raise ValueError(f"unknown metric {metric!r}")
    return Reading(value=value, turns=n)


def _payload(firing: AlertFiring) -> dict[str, Any]:
    rule = firing.rule
    return {
        "alert": rule.name,
        "metric": rule.metric,
        "metric_label": rule.get_metric_display(),
        "value": firing.value,
        "threshold": firing.threshold,
        "window_minutes": rule.window_minutes,
        "turns": firing.turns,
        "fired_at": firing.fired_at.isoformat(),
        "text": (
            f"{rule.name}: {rule.get_metric_display()} is {firing.value:.4g}, above "
            f"{firing.threshold:.4g} over the last {rule.window_minutes} minutes."
        ),
    }


def alerts_evaluate(*, now: datetime | None = None) -> list[AlertFiring]:
    """Check every enabled rule once; returns the firings this pass recorded. Safe to run twice:
    a rule already firing does not fire again until it has recovered."""
    now = now or timezone.now()
    fired: list[AlertFiring] = []
    for rule in AlertRule.objects.filter(enabled=True).order_by("pk"):
        reading = metric_read(rule, now=now)
        enough = rule.metric not in NEEDS_TURNS or reading.turns >= rule.min_turns
        above = enough and reading.value is not None and reading.value > rule.threshold
        firing = _record(rule=rule, reading=reading, above=above, now=now)
        if firing is not None:
            fired.append(firing)
    return fired


@transaction.atomic
def _record(*, rule: AlertRule, reading: Reading, above: bool, now: datetime) -> AlertFiring | None:
    locked = AlertRule.objects.select_for_update().get(pk=rule.pk)
    locked.last_value, locked.last_evaluated_at = reading.value, now
    firing = None
    if above and locked.state == AlertRule.State.OK:
        locked.state = AlertRule.State.FIRING
        firing = AlertFiring.objects.create(
            rule=locked,
            value=float(reading.value or 0),
            threshold=locked.threshold,
            turns=reading.turns,
        )
        if locked.webhook_url:
            from observability.tasks import alert_deliver_task

            firing_id = firing.pk
            transaction.on_commit(lambda: alert_deliver_task.delay(firing_id), robust=True)
    elif not above and locked.state == AlertRule.State.FIRING:
        locked.state = AlertRule.State.OK
        AlertFiring.objects.filter(rule=locked, resolved_at__isnull=True).update(resolved_at=now)
    locked.save(update_fields=["state", "last_value", "last_evaluated_at"])
    return firing


def alert_deliver(*, firing_id: int) -> AlertFiring | None:
    """POST the firing to its rule's webhook. Safe to run twice: a delivered firing is left alone."""
    firing = AlertFiring.objects.select_related("rule").filter(pk=firing_id).first()
    if firing is None or firing.delivered or not firing.rule.webhook_url:
        return firing
    error = ""
    try:
        response = httpx.post(
            firing.rule.webhook_url,
            json=_payload(firing),
            timeout=settings.ALERT_WEBHOOK_TIMEOUT_S,
            follow_redirects=False,
        )
        if response.status_code >= 300:
            error = f"The webhook answered HTTP {response.status_code}."
    except httpx.HTTPError as exc:
        error = f"The webhook could not be reached ({type(exc).__name__}: {exc})."
    AlertFiring.objects.filter(pk=firing.pk).update(
        attempts=firing.attempts + 1,
        delivered=not error,
        delivered_at=timezone.now() if not error else None,
        error=error,
    )
    firing.refresh_from_db()
    if error:
        raise AlertDeliveryFailed(error)
    return firing


def alert_rule_save(*, rule: AlertRule | None, data: Mapping[str, Any]) -> AlertRule:
    """Create or edit a rule from a validated form's data; editing returns it to OK."""
    rule = rule or AlertRule()
    for name in ("name", "metric", "threshold", "window_minutes", "min_turns", "webhook_url"):
        setattr(rule, name, data[name] if name != "webhook_url" else data.get(name) or "")
    rule.state, rule.last_value = AlertRule.State.OK, None
    rule.save()
    AlertFiring.objects.filter(rule=rule, resolved_at__isnull=True).update(
        resolved_at=timezone.now()
    )
    return rule


def alert_rule_set_enabled(*, rule: AlertRule, enabled: bool) -> AlertRule:
    rule.enabled = enabled
    if not enabled:
        rule.state = AlertRule.State.OK
        AlertFiring.objects.filter(rule=rule, resolved_at__isnull=True).update(
            resolved_at=timezone.now()
        )
    rule.save(update_fields=["enabled", "state", "updated_at"])
    return rule


def alert_rule_delete(*, rule: AlertRule) -> None:
    rule.delete()
