"""The dashboard's numbers: totals for the filters, a row per day, breakdowns per model and per
user group, and active and returning people. Served from the rollups; `source="raw"` computes
the same from the raw tables (for the benchmark and the rollup tests)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import Group, User
from django.db import connection
from django.db.models import Case, F, OuterRef, QuerySet, Subquery, When
from django.db.models.functions import TruncDate

from chatbot.accounts.roles import ROLE_PERMISSIONS
from chatbot.models import AlertRule, ModelEndpoint, RollupRun, Turn, UserDay
from observability import rollups
from observability.rollups import Filters, empty_totals, percentile


def _rate(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def derive(t: dict[str, Any]) -> dict[str, Any]:
    """What a person reads, from one row of summed counts."""
    turns = t["turns"]
    cost = Decimal(t["cost"] or 0)
    return {
        "turns": turns,
        "done": t["done"],
        "failed": t["failed"],
        "error_rate": _rate(t["failed"], turns),
        "ttft_p50": percentile(t["ttft_hist"], 0.5),
        "ttft_p95": percentile(t["ttft_hist"], 0.95),
        "total_p50": percentile(t["total_hist"], 0.5),
        "total_p95": percentile(t["total_hist"], 0.95),
        "ttft_avg": _rate(t["ttft_sum_ms"], t["ttft_count"]),
        "tokens_in": t["tokens_in"],
        "tokens_out": t["tokens_out"],
        "tokens": t["tokens_in"] + t["tokens_out"],
        "cost": cost,
        "cost_per_turn": cost / turns if turns else None,
        "judged": t["judged"],
        "judge_pass_rate": _rate(t["judged"] - t["judge_flagged"], t["judged"]),
        "thumbs_up": t["thumbs_up"],
        "thumbs_down": t["thumbs_down"],
        "thumbs_up_rate": _rate(t["thumbs_up"], t["thumbs_up"] + t["thumbs_down"]),
        "reviews": t["reviews"],
        # The mean rubric grade (1-5) over every graded answer.
        "review_grade": _rate(t["review_grade_sum"], t["reviews"] * 5),
        "toxicity_flagged": t["toxicity_flagged"],
        "pii_flagged": t["pii_flagged"],
        "flagged_share": _rate(t["flagged"], turns),
        "escalations": t["escalations"],
        "escalation_rate": _rate(t["escalations"], turns),
        "no_answer_rate": _rate(t["no_answer"], turns),
        "task_success": _rate(t["succeeded"], turns),
        # Of the turns that could use the answer cache (plain pipeline, first question).
        "cache_lookups": t["cache_lookups"],
        "cache_hits": t["cache_hits"],
        "cache_hit_rate": _rate(t["cache_hits"], t["cache_lookups"]),
        "saved_tokens": t["saved_tokens"],
        "saved_cost": Decimal(t["saved_cost"] or 0),
    }


def breakdown(t: dict[str, Any]) -> dict[str, Any]:
    """What the per-model and per-group charts show."""
    return {
        "turns": t["turns"],
        "tokens": t["tokens_in"] + t["tokens_out"],
        "cost": Decimal(t["cost"] or 0),
    }


@dataclass
class People:
    active: int = 0
    returning: int = 0
    per_day: dict[date, int] = field(default_factory=dict)


@dataclass
class Dashboard:
    filters: Filters
    total: dict[str, Any]
    days: list[tuple[date, dict[str, Any]]]
    by_model: list[tuple[str, dict[str, Any]]]
    by_group: list[tuple[str, dict[str, Any]]]
    people: People

    def chart_data(self) -> dict[str, Any]:
        """What `static/js/dashboard.js` draws: plain numbers, None for "no data that day"."""

        def series(name: str, scale: float = 1.0, digits: int = 4) -> list[float | None]:
            out: list[float | None] = []
            for _, row in self.days:
                value = row[name]
                out.append(None if value is None else round(float(value) * scale, digits))
            return out

        def breakdown(rows: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
            return {
                "labels": [label for label, _ in rows],
                "cost": [round(float(r["cost"]), 6) for _, r in rows],
                "tokens": [r["tokens"] for _, r in rows],
                "turns": [r["turns"] for _, r in rows],
            }

        percent = 100.0
        return {
            "labels": [day.isoformat() for day, _ in self.days],
            "series": {
                "ttft_p50": series("ttft_p50", digits=1),
                "ttft_p95": series("ttft_p95", digits=1),
                "total_p50": series("total_p50", digits=1),
                "total_p95": series("total_p95", digits=1),
                "turns": series("turns", digits=0),
                "error_rate": series("error_rate", percent, 2),
                "tokens": series("tokens", digits=0),
                "cost": series("cost", digits=6),
                "judge_pass_rate": series("judge_pass_rate", percent, 2),
                "thumbs_up_rate": series("thumbs_up_rate", percent, 2),
                "review_grade": series("review_grade", digits=2),
                "toxicity_flagged": series("toxicity_flagged", digits=0),
                "pii_flagged": series("pii_flagged", digits=0),
                "escalation_rate": series("escalation_rate", percent, 2),
                "no_answer_rate": series("no_answer_rate", percent, 2),
                "task_success": series("task_success", percent, 2),
                "active_users": [self.people.per_day.get(day, 0) for day, _ in self.days],
            },
            "by_model": breakdown(self.by_model),
            "by_group": breakdown(self.by_group),
        }


def _first_group() -> Subquery:
    """The person's team as the rollups count it: first non-role group by name, else the role."""
    memberships = User.groups.through.objects.filter(user_id=OuterRef("user_id"))
    is_role = Case(When(group__name__in=list(ROLE_PERMISSIONS), then=1), default=0)
    return Subquery(memberships.order_by(is_role, "group__name").values("group_id")[:1])


def people(filters: Filters, *, source: str = "rollups") -> People:
    """Active people and those who came back on another day. Only the dates and the group filter
    apply: a person is not one model's or one channel's."""
    rows: QuerySet[Any]
    if source == "rollups":
        rows = UserDay.objects.filter(day__gte=filters.start, day__lte=filters.end)
    else:
        rows = Turn.objects.filter(
            is_replay=False,
            status__in=rollups.FINISHED,
            created_at__gte=filters.start_at,
            created_at__lt=filters.end_at,
        ).annotate(user_id=F("conversation__owner_id"), day=TruncDate("created_at"))
    if filters.group_id is not None:
        rows = rows.annotate(first_group=_first_group()).filter(first_group=filters.group_id)
    # Counted in the database: 180 days are some 54,000 (person, day) pairs at 1M turns, which
    # took longer to bring over and count here than the rest of the dashboard's statements.
    # A UserDay row is already one (person, day) pair (unique together).
    pairs_query = rows.order_by().values("user_id", "day")
    if source != "rollups":
        pairs_query = pairs_query.distinct()
    pairs, params = pairs_query.query.sql_with_params()
    per_day: dict[date, int] = {}
    counts = {"active": 0, "returning": 0}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH p AS MATERIALIZED ({pairs}),
u AS (SELECT user_id, count(*) AS days FROM p GROUP BY user_id)
SELECT 'day', p.day, count(*) FROM p GROUP BY p.day
UNION ALL SELECT 'active', NULL, count(*) FROM u
UNION ALL SELECT 'returning', NULL, count(*) FILTER (WHERE days > 1) FROM u""",  # noqa: S608 (the ORM's own SQL, its values bound)
            params,
        )
        for kind, day, count in cursor.fetchall():
            if kind == "day":
                per_day[day] = count
            else:
                counts[kind] = count
    return People(active=counts["active"], returning=counts["returning"], per_day=per_day)


def dashboard_build(filters: Filters, *, source: str = "rollups") -> Dashboard:
    totals = rollups.rollup_all(filters) if source == "rollups" else rollups.raw_all(filters)
    daily = totals["day"]
    total = totals["total"].get(None) or empty_totals()
    names = dict(ModelEndpoint.objects.values_list("pk", "name"))
    groups = dict(Group.objects.values_list("pk", "name"))
    by_model = sorted(
        (
            (names.get(k, "no model") if k else "no model", breakdown(v))
            for k, v in totals["endpoint"].items()
        ),
        key=lambda pair: -pair[1]["cost"],
    )
    by_group = sorted(
        (
            (groups.get(k, "no group") if k else "no group", breakdown(v))
            for k, v in totals["group"].items()
        ),
        key=lambda pair: -pair[1]["cost"],
    )
    span = (filters.end - filters.start).days + 1
    days = [filters.start + timedelta(days=i) for i in range(span)]
    return Dashboard(
        filters=filters,
        total=derive(total),
        days=[(day, derive(daily.get(day) or empty_totals())) for day in days],
        by_model=by_model,
        by_group=by_group,
        people=people(filters, source=source),
    )


CSV_COLUMNS = (
    "turns", "done", "failed", "error_rate", "ttft_p50", "ttft_p95", "total_p50", "total_p95",
    "tokens_in", "tokens_out", "cost", "judged", "judge_pass_rate", "thumbs_up", "thumbs_down",
    "thumbs_up_rate", "reviews", "review_grade", "toxicity_flagged", "pii_flagged",
    "flagged_share", "escalations", "escalation_rate",
    "no_answer_rate", "task_success", "cache_lookups", "cache_hits", "cache_hit_rate",
    "saved_tokens", "saved_cost",
)  # fmt: skip


def dashboard_csv(board: Dashboard) -> str:
    """One row per day, then the total; rates as fractions, latencies in ms, cost in dollars."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["day", *CSV_COLUMNS, "active_users"])

    def cell(value: Any) -> Any:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.6g}"
        return value

    for day, row in board.days:
        writer.writerow(
            [
                day.isoformat(),
                *(cell(row[c]) for c in CSV_COLUMNS),
                board.people.per_day.get(day, 0),
            ]
        )
    writer.writerow(["total", *(cell(board.total[c]) for c in CSV_COLUMNS), board.people.active])
    return out.getvalue()


# The distinct routes by skipping through the route index from one value to the next (a handful
# of probes) rather than reading every rollup row: at 1,000,000 turns (315,000 rollup rows) the
# plain DISTINCT took 47 ms of the page's 200.
_ROUTES_SQL = """
WITH RECURSIVE seen(route) AS (
    (SELECT route FROM chatbot_turnrollup ORDER BY route LIMIT 1)
    UNION ALL
    SELECT (SELECT t.route FROM chatbot_turnrollup t
            WHERE t.route > seen.route ORDER BY t.route LIMIT 1)
    FROM seen WHERE seen.route IS NOT NULL
)
SELECT route FROM seen WHERE route IS NOT NULL
"""


def routes_known() -> list[str]:
    """Every route the rollups have seen, in order."""
    with connection.cursor() as cursor:
        cursor.execute(_ROUTES_SQL)
        return [route for (route,) in cursor.fetchall()]


def rollups_as_of() -> RollupRun | None:
    return RollupRun.objects.filter(status=RollupRun.Status.DONE).order_by("-until").first()


def alerts_firing() -> QuerySet[AlertRule]:
    return AlertRule.objects.filter(enabled=True, state=AlertRule.State.FIRING).order_by("name")
