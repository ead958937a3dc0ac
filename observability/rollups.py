"""Hourly rollups of production turns: what the dashboard reads instead of the raw tables.

- `hours_recompute` sums the per-turn facts (`observability.facts`) per (hour, model, route,
  channel, group, collection) and replaces those hours' `TurnRollup` rows: a recompute is
  idempotent, so any hour can be redone any time (the retrieval drift rows of `observability.drift`
  are redone with them); `hours_touched` finds the hours to redo;
- `rollup_all` reads the dashboard's totals (per day, model, group, and in all) from the rollups;
  `raw_all` computes the same from the raw tables with the same per-turn SQL, which is "the same
  query on the raw tables" (the rollup tests and the benchmark compare the two).

Days and hours are UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import connection, transaction

from chatbot.models import (
    Conversation,
    Escalation,
    Feedback,
    Judge,
    JudgeScore,
    Review,
    ReviewItem,
    Turn,
    TurnRollup,
    TurnRollupDay,
    UserDay,
)
from observability import drift
from observability.facts import (
    FINISHED,
    HISTOGRAMS,
    KEYS,
    LATENCY_BOUNDS,
    SUMS,
    bucket_of,
    empty_totals,
    facts_sql,
    percentile,
    select_sums,
    sql_params,
    table_name,
)

__all__ = ["FINISHED", "LATENCY_BOUNDS", "SUMS", "bucket_of", "empty_totals", "percentile"]


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


# Hours recomputed per statement: a full rebuild goes a week at a time.
HOURS_PER_STATEMENT = 7 * 24


@transaction.atomic
def hours_recompute(*, hours: Iterable[datetime]) -> int:
    """Replace the rollup rows (and the active-user days) of `hours` with what the raw tables say
    now. Safe to run twice or concurrently (one at a time, behind an advisory lock)."""
    wanted = sorted({_hour(h) for h in hours})
    if not wanted:
        return 0
    days = sorted({h.date() for h in wanted})
    columns = ["hour", *KEYS, *SUMS, *HISTOGRAMS]
    turn = table_name(Turn)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext('observability.rollups'))")
        cursor.execute(
            f"DELETE FROM {table_name(TurnRollup)} WHERE hour = ANY(%(hours)s)",  # noqa: S608
            {"hours": wanted},
        )
        drift.hours_clear(cursor, wanted)
        for start in range(0, len(wanted), HOURS_PER_STATEMENT):
            batch = wanted[start : start + HOURS_PER_STATEMENT]
            # Scattered hours (a thumbs on a months-old answer beside this hour's turns) are read
            # one index range each, not as one range spanning everything between them.
            cursor.execute(
                f"""SELECT t.id FROM unnest(%(hours)s::timestamptz[]) AS h(hour)
JOIN {turn} t ON t.created_at >= h.hour AND t.created_at < h.hour + interval '1 hour'
WHERE NOT t.is_replay AND t.status = ANY(%(finished)s)""",  # noqa: S608
                sql_params(hours=batch),
            )
            ids = [row[0] for row in cursor.fetchall()]
            if not ids:
                continue
            cursor.execute(
                f"""{facts_sql("t.id = ANY(%(ids)s)", by_ids=True)}
INSERT INTO {table_name(TurnRollup)} ({", ".join(columns)}, computed_at)
SELECT date_trunc('hour', f.created_at) AS hour, f.endpoint_id, f.route, f.channel,
    f.group_id, f.collection_id,
    {select_sums()},
    now()
FROM f
GROUP BY 1, 2, 3, 4, 5, 6""",  # noqa: S608
                sql_params(ids=ids),
            )
            drift.turns_insert(cursor, ids)
        _days_recompute(cursor, days)
        days_from_hours(cursor, days)
    return len(wanted)


_KEY_COLUMNS = ", ".join(f"r.{key}" for key in KEYS)


def days_from_hours(cursor: Any, days: Sequence[date]) -> None:
    """Replace the daily rollup rows of `days` with the sums of their hourly rows (the caller
    holds the rollups' lock, as `hours_recompute` does)."""
    cursor.execute(
        f"DELETE FROM {table_name(TurnRollupDay)} WHERE day = ANY(%(days)s)",  # noqa: S608
        {"days": list(days)},
    )
    starts = [datetime.combine(day, datetime.min.time(), tzinfo=UTC) for day in days]
    cursor.execute(
        f"""INSERT INTO {table_name(TurnRollupDay)} (day, {", ".join(KEYS)}, {", ".join([*SUMS, *HISTOGRAMS])}, computed_at)
SELECT (d.start AT TIME ZONE 'UTC')::date, {_KEY_COLUMNS}, {", ".join(rollup_sum_columns())}, now()
FROM unnest(%(starts)s::timestamptz[]) AS d(start)
JOIN {table_name(TurnRollup)} r ON r.hour >= d.start AND r.hour < d.start + interval '1 day'
GROUP BY d.start, {_KEY_COLUMNS}""",  # noqa: S608
        {"starts": starts},
    )


def _days_recompute(cursor: Any, days: Sequence[date]) -> None:
    turn, conv = table_name(Turn), table_name(Conversation)
    cursor.execute(
        f"DELETE FROM {table_name(UserDay)} WHERE day = ANY(%(days)s)",  # noqa: S608
        {"days": list(days)},
    )
    starts = [datetime.combine(day, datetime.min.time(), tzinfo=UTC) for day in days]
    cursor.execute(
        f"""
INSERT INTO {table_name(UserDay)} (day, user_id, turns)
SELECT (d.start AT TIME ZONE 'UTC')::date, c.owner_id, count(*)
FROM unnest(%(starts)s::timestamptz[]) AS d(start)
JOIN {turn} t ON t.created_at >= d.start AND t.created_at < d.start + interval '1 day'
JOIN {conv} c ON c.id = t.conversation_id
WHERE NOT t.is_replay AND t.status = ANY(%(finished)s)
GROUP BY 1, 2""",  # noqa: S608
        sql_params(starts=starts),
    )


# Turns streaming when a pass ran are picked up by the next one: none streams longer than the
# stale-turn sweep allows (10 minutes), and judge retries land within a few minutes.
LATE_SLACK = timedelta(minutes=20)


def hours_touched(*, since: datetime | None, until: datetime) -> set[datetime]:
    """The turn hours something changed in between `since` and `until` (every hour when None)."""
    turns = Turn.objects.filter(is_replay=False, created_at__lt=until)
    if since is None:
        first = turns.order_by("created_at").values_list("created_at", flat=True).first()
        if first is None:
            return set()
        hour, hours = _hour(first), set()
        while hour < until:
            hours.add(hour)
            hour += timedelta(hours=1)
        return hours
    early = since - LATE_SLACK
    queries: list[Iterable[datetime]] = [
        turns.filter(created_at__gte=early).values_list("created_at", flat=True),
        Feedback.objects.filter(updated_at__gte=since).values_list("turn__created_at", flat=True),
        Escalation.objects.filter(created_at__gte=since).values_list("turn__created_at", flat=True),
        # Filtering on every judge lets Postgres use the (judge, created_at) index.
        JudgeScore.objects.filter(
            judge_id__in=Judge.objects.values("pk"), created_at__gte=early
        ).values_list("turn__created_at", flat=True),
        Review.objects.filter(created_at__gte=since).values_list("turn__created_at", flat=True),
        ReviewItem.objects.filter(created_at__gte=since).values_list("turn__created_at", flat=True),
    ]
    return {_hour(moment) for query in queries for moment in query}


# --- reading totals --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """What the dashboard shows: days `start`..`end` (inclusive, UTC) and optional keys."""

    start: date
    end: date
    endpoint_id: int | None = None
    route: str = ""
    channel: str = ""
    group_id: int | None = None
    collection_id: int | None = None

    @property
    def start_at(self) -> datetime:
        return datetime.combine(self.start, datetime.min.time(), tzinfo=UTC)

    @property
    def end_at(self) -> datetime:
        return datetime.combine(self.end + timedelta(days=1), datetime.min.time(), tzinfo=UTC)

    def keys(self) -> dict[str, Any]:
        chosen = {
            "endpoint_id": self.endpoint_id,
            "route": self.route or None,
            "channel": self.channel or None,
            "group_id": self.group_id,
            "collection_id": self.collection_id,
        }
        return {k: v for k, v in chosen.items() if v is not None}


# The dashboard's four views of the same numbers, computed in one pass with GROUPING SETS.
# GROUPING(day, endpoint, group) is a bitmask of the keys a row is NOT grouped by.
GROUPINGS = {3: "day", 5: "endpoint", 6: "group", 7: "total"}


def _grouped(sql: str, params: dict[str, Any]) -> dict[str, dict[Any, dict[str, Any]]]:
    result: dict[str, dict[Any, dict[str, Any]]] = {name: {} for name in GROUPINGS.values()}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        names = [col.name for col in cursor.description]
        for values in cursor.fetchall():
            row = dict(zip(names, values, strict=True))
            by = GROUPINGS[row.pop("grouping")]
            day, endpoint, group = row.pop("day"), row.pop("endpoint_id"), row.pop("group_id")
            key = {"day": day.date() if day else None, "endpoint": endpoint, "group": group}.get(by)
            if row["turns"]:
                result[by][key] = row
    return result


def _sets(day: str, prefix: str) -> str:
    return f"""GROUPING({day}, {prefix}endpoint_id, {prefix}group_id) AS grouping,
    {day} AS day, {prefix}endpoint_id AS endpoint_id, {prefix}group_id AS group_id"""


def _group_by(day: str, prefix: str) -> str:
    return f"GROUP BY GROUPING SETS (({day}), ({prefix}endpoint_id), ({prefix}group_id), ())"


def raw_all(filters: Filters) -> dict[str, dict[Any, dict[str, Any]]]:
    """Totals per day, per endpoint, per group and in all, straight from the raw tables."""
    keys = filters.keys()
    where = " AND ".join(f"f.{name} = %({name})s" for name in keys) or "true"
    day = "date_trunc('day', f.created_at)"
    sql = f"""{facts_sql("t.created_at >= %(start)s AND t.created_at < %(end)s")}
SELECT {_sets(day, "f.")},
    {select_sums()}
FROM f WHERE {where}
{_group_by(day, "f.")}"""  # noqa: S608
    return _grouped(sql, sql_params(start=filters.start_at, end=filters.end_at, **keys))


# What the per-model and per-group breakdowns show; only these are summed for them.
BREAKDOWN_SUMS = ("turns", "tokens_in", "tokens_out", "cost")
_FLOAT_SUMS = {"cost", "saved_cost", "ttft_sum_ms", "total_sum_ms"}


def rollup_sum_columns() -> list[str]:
    """The SELECT list summing every rollup column (`r`: the rollup table): each sum, and each
    latency histogram cell by cell."""
    sums = [
        f"coalesce(sum(r.{name}), 0){'' if name in _FLOAT_SUMS else '::bigint'} AS {name}"
        for name in SUMS
    ]
    for histogram in HISTOGRAMS:
        cells = ", ".join(
            f"coalesce(sum(r.{histogram}[{k + 1}]), 0)" for k in range(len(LATENCY_BOUNDS) + 1)
        )
        sums.append(f"ARRAY[{cells}]::bigint[] AS {histogram}")
    return sums


def rollup_all(filters: Filters) -> dict[str, dict[Any, dict[str, Any]]]:
    """The same totals from the daily rollups (the dashboard's range is whole days), in two scans
    of the rows in the date range: every sum per day (the total is their sum), and the few sums
    the breakdowns show per model and per group. (One GROUPING SETS pass with every sum for every
    set costs about three times more.)"""
    keys = filters.keys()
    where = " AND ".join(f"r.{name} = %({name})s" for name in keys) or "true"
    where = f"r.day >= %(start)s AND r.day <= %(end)s AND {where}"
    params = {"start": filters.start, "end": filters.end, **keys}
    sums = rollup_sum_columns()
    table = table_name(TurnRollupDay)
    result: dict[str, dict[Any, dict[str, Any]]] = {name: {} for name in GROUPINGS.values()}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT r.day, {', '.join(sums)} FROM {table} r"  # noqa: S608
            f" WHERE {where} GROUP BY 1",
            params,
        )
        names = [col.name for col in cursor.description]
        for values in cursor.fetchall():
            row = dict(zip(names, values, strict=True))
            if row["turns"]:
                result["day"][row.pop("day")] = row
        light = ", ".join(f"coalesce(sum(r.{name}), 0) AS {name}" for name in BREAKDOWN_SUMS)
        cursor.execute(
            f"SELECT GROUPING(r.endpoint_id, r.group_id) AS grouping, r.endpoint_id, r.group_id,"  # noqa: S608
            f" {light} FROM {table} r WHERE {where}"
            " GROUP BY GROUPING SETS ((r.endpoint_id), (r.group_id))",
            params,
        )
        names = [col.name for col in cursor.description]
        for values in cursor.fetchall():
            row = dict(zip(names, values, strict=True))
            by = "endpoint" if row.pop("grouping") == 1 else "group"
            key = row.pop("endpoint_id") if by == "endpoint" else row.pop("group_id")
            row.pop("endpoint_id", None), row.pop("group_id", None)
            if row["turns"]:
                result[by][key] = row
    if result["day"]:
        total = empty_totals()
        for row in result["day"].values():
            for name in SUMS:
                total[name] += row[name]
            for histogram in HISTOGRAMS:
                total[histogram] = [
                    a + b for a, b in zip(total[histogram], row[histogram], strict=True)
                ]
        result["total"][None] = total
    return result


def raw_totals(filters: Filters, *, by: str) -> dict[Any, dict[str, Any]]:
    """Totals from the raw tables, `by` day, endpoint, group or "total" (key None)."""
    return raw_all(filters)[by]


def rollup_totals(filters: Filters, *, by: str) -> dict[Any, dict[str, Any]]:
    """Totals from the rollups, `by` day, endpoint, group or "total" (key None)."""
    return rollup_all(filters)[by]
