"""The figures of one week of the weekly report (`observability.weekly`): turns from the hourly
rollups, work done by when it happened, endpoints and prompts in use, retrieval drift, and the
sections other features add (the judges' agreement with humans). Weeks are cut in the site's time
zone; rollup hours are UTC hours, so in a zone whose offset is not a whole number of hours a
week's edges are off by that fraction of an hour."""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, Q, Sum
from django.utils import timezone

from chatbot import hooks
from chatbot.models import (
    DatasetItem,
    Export,
    FineTuneJob,
    ModelEndpoint,
    Promotion,
    PromptVersion,
    Review,
    Turn,
    TurnRollup,
)
from observability import drift
from observability.dashboard import derive
from observability.facts import (
    FINISHED,
    HISTOGRAMS,
    SUMS,
    empty_totals,
    table_name,
)
from observability.rollups import rollup_sum_columns
from observability.weekly_text import CHANGES

logger = logging.getLogger(__name__)

WEEK = timedelta(days=7)


class NotAFinishedWeek(ValueError):
    """The date is not a Monday, or its week has not ended yet."""


def monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def week_bounds(week_start: date) -> tuple[datetime, datetime]:
    """The week's first and last-plus-one moments, midnights in the site's time zone."""
    zone = timezone.get_default_timezone()
    start = datetime.combine(week_start, time.min, tzinfo=zone)
    return start, datetime.combine(week_start + WEEK, time.min, tzinfo=zone)


def last_finished_week(now: datetime | None = None) -> date:
    """The Monday of the latest week that has ended (in the site's time zone)."""
    today = timezone.localtime(now or timezone.now()).date()
    return monday_of(today) - WEEK


# --- the figures -----------------------------------------------------------------------------------


def _turn_sums(start: datetime, end: datetime) -> dict[int | None, dict[str, Any]]:
    """The rollup sums of [start, end) per endpoint, in one indexed range read."""
    sums = rollup_sum_columns()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT r.endpoint_id, {', '.join(sums)} FROM {table_name(TurnRollup)} r"  # noqa: S608
            " WHERE r.hour >= %(start)s AND r.hour < %(end)s GROUP BY r.endpoint_id",
            {"start": start, "end": end},
        )
        names = [col.name for col in cursor.description]
        rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    return {row.pop("endpoint_id"): row for row in rows if row["turns"]}


def _plain(value: Any) -> Any:
    """A figure as JSON holds it: money and other decimals as floats."""
    if isinstance(value, Decimal):
        return float(value)
    return value


def _derived(totals: dict[str, Any]) -> dict[str, Any]:
    figures = {k: _plain(v) for k, v in derive(totals).items()}
    figures["flagged"] = totals["flagged"]
    figures["review_grade_sum"] = totals["review_grade_sum"]
    return figures


def turn_figures(start: datetime, end: datetime) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The week's turn figures, and one row per endpoint that answered (busiest first)."""
    per_endpoint = _turn_sums(start, end)
    total = empty_totals()
    for row in per_endpoint.values():
        for name in SUMS:
            total[name] += row[name]
        for histogram in HISTOGRAMS:
            total[histogram] = [
                a + b for a, b in zip(total[histogram], row[histogram], strict=True)
            ]
    names = dict(
        ModelEndpoint.objects.filter(pk__in=[k for k in per_endpoint if k]).values_list(
            "pk", "name"
        )
    )
    endpoints = []
    for pk, row in per_endpoint.items():
        figures = _derived(row)
        endpoints.append(
            {
                "id": pk,
                "name": names.get(pk, "no model") if pk else "no model",
                "turns": figures["turns"],
                "share": figures["turns"] / total["turns"] if total["turns"] else None,
                "cost": figures["cost"],
                "total_p95": figures["total_p95"],
                "judge_pass_rate": figures["judge_pass_rate"],
                "thumbs_up_rate": figures["thumbs_up_rate"],
            }
        )
    endpoints.sort(key=lambda e: (-e["turns"], e["name"]))
    return _derived(total), endpoints


def work_figures(start: datetime, end: datetime) -> dict[str, Any]:
    """What people and jobs did during [start, end)."""
    during = {"created_at__gte": start, "created_at__lt": end}
    reviews = Review.objects.filter(**during).aggregate(
        n=Count("pk"),
        corrected=Count("pk", filter=~Q(corrected_answer="")),
        approved=Count("pk", filter=Q(approved=True)),
    )
    items = DatasetItem.objects.filter(**during).aggregate(
        n=Count("pk"),
        from_reviews=Count("pk", filter=Q(source_review__isnull=False)),
        datasets=Count("dataset", distinct=True),
    )
    exports = Export.objects.filter(
        status=Export.Status.DONE, finished_at__gte=start, finished_at__lt=end
    ).aggregate(n=Count("pk"), rows=Sum("rows_written"))
    jobs = list(
        FineTuneJob.objects.filter(finished_at__gte=start, finished_at__lt=end)
        .select_related("endpoint")
        .order_by("finished_at", "pk")
    )
    trained = [j for j in jobs if j.status == FineTuneJob.Status.DONE]
    promoted = list(
        Promotion.objects.filter(promoted_at__gte=start, promoted_at__lt=end)
        .select_related("endpoint")
        .order_by("promoted_at", "pk")
    )
    rolled_back = Promotion.objects.filter(
        rolled_back_at__gte=start, rolled_back_at__lt=end
    ).count()
    published = PromptVersion.objects.filter(published_at__gte=start, published_at__lt=end)
    return {
        "reviews": reviews["n"],
        "corrected": reviews["corrected"],
        "approved": reviews["approved"],
        "dataset_items": items["n"],
        "dataset_items_from_reviews": items["from_reviews"],
        "datasets_grown": items["datasets"],
        "exports": exports["n"],
        "export_rows": exports["rows"] or 0,
        "finetune_done": len(trained),
        # The rows those jobs trained on (validation rows held out), from each job's lineage.
        "finetune_rows": sum(
            int((j.lineage or {}).get("rows", {}).get("train") or 0) for j in trained
        ),
        "finetune_failed": sum(1 for j in jobs if j.status == FineTuneJob.Status.FAILED),
        "finetuned_endpoints": [j.endpoint.name for j in trained if j.endpoint is not None],
        "promoted": len(promoted),
        "promoted_endpoints": [p.endpoint.name for p in promoted],
        "rolled_back": rolled_back,
        "prompts_published": [
            f"{p.get_kind_display()} v{p.number}" for p in published.order_by("published_at")
        ],
    }


def prompts_in_use(start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The prompt versions the week's production turns were answered with (created_at index)."""
    pairs = (
        Turn.objects.filter(
            created_at__gte=start, created_at__lt=end, is_replay=False, status__in=FINISHED
        )
        .values_list("prompt_version_id", "answer_version_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    counts: dict[int, int] = {}
    own = 0
    for system, answer, n in pairs:
        if system is None:
            own += n
        for pk in (system, answer):
            if pk is not None:
                counts[pk] = counts.get(pk, 0) + n
    versions = PromptVersion.objects.filter(pk__in=list(counts)).order_by("kind", "-number")
    rows = [
        {
            "id": v.pk,
            "kind": v.kind,
            "label": f"{v.get_kind_display()} v{v.number}",
            "status": v.get_status_display(),
            "note": v.note,
            "turns": counts[v.pk],
        }
        for v in versions
    ]
    if own:
        rows.append(
            {
                "id": None,
                "kind": PromptVersion.Kind.SYSTEM,
                "label": "The caller's own system prompt, or none recorded",
                "status": "",
                "note": "",
                "turns": own,
            }
        )
    return rows


def judge_sections(week_start: date) -> dict[str, Any]:
    """What other features add (the judges' agreement); a failing one is logged and left out."""
    merged: dict[str, Any] = {}
    answers = hooks.weekly_report_sections.send_robust(
        sender=None, week_start=week_start, week_end=week_start + timedelta(days=6)
    )
    for receiver, answer in answers:
        if isinstance(answer, Exception):
            logger.error("weekly report section %s failed: %s", receiver, answer, exc_info=answer)
        elif isinstance(answer, dict):
            merged.update(answer)
    return merged


def _change(now: Any, before: Any) -> dict[str, Any]:
    delta = None if now is None or before is None else now - before
    relative = delta / before if delta is not None and before else None
    return {"week": now, "previous": before, "delta": delta, "relative": relative}


def week_figures(week_start: date) -> dict[str, Any]:
    start, end = week_bounds(week_start)
    before = start - WEEK
    turns, endpoints = turn_figures(start, end)
    previous_turns, _ = turn_figures(before, start)
    work, previous_work = work_figures(start, end), work_figures(before, start)
    sections = {"turns": (turns, previous_turns), "work": (work, previous_work)}
    changes = {
        key: _change(sections[section][0][key], sections[section][1][key])
        for key, section, *_ in CHANGES
    }
    figures: dict[str, Any] = {
        "week_start": week_start.isoformat(),
        "week_end": (week_start + timedelta(days=6)).isoformat(),
        "time_zone": settings.TIME_ZONE,
        "turns": turns,
        "previous_turns": previous_turns,
        "work": work,
        "previous_work": previous_work,
        "changes": changes,
        "endpoints": endpoints,
        "prompts": prompts_in_use(start, end),
        "drift": [row.as_json() for row in drift.drift_rows(start=before, split=start, end=end)],
        "judges": [],
    }
    figures.update(judge_sections(week_start))
    return figures
