"""The per-turn facts the dashboard counts, as one SQL statement, and the latency histogram.

For each finished production turn (replays and unfinished turns never count): status, tokens,
cost, latency buckets, thumbs, escalation, judge flags, reviews, the review flag, the answer
cache's lookups, hits and savings,
the asker's team and the collection of the answer's top source. `observability.rollups` sums
these per hour into `TurnRollup` rows, and per day / model / group straight from the raw tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from django.db import connection

from chatbot.accounts.roles import ROLE_PERMISSIONS
from chatbot.models import (
    Chunk,
    Citation,
    Conversation,
    Escalation,
    Feedback,
    Judge,
    JudgeScore,
    Review,
    ReviewItem,
    Turn,
)
from chatbot.models.observability import LATENCY_BOUNDS_MS as LATENCY_BOUNDS

FINISHED = (Turn.Status.DONE, Turn.Status.FAILED, Turn.Status.CANCELLED)

# Every summed column of TurnRollup, with its SQL over the per-turn facts `f`.
SUMS: dict[str, str] = {
    "turns": "count(*)",
    "done": "count(*) FILTER (WHERE f.status = 'done')",
    "failed": "count(*) FILTER (WHERE f.status = 'failed')",
    "cancelled": "count(*) FILTER (WHERE f.status = 'cancelled')",
    "no_answer": "count(*) FILTER (WHERE f.no_answer)",
    "succeeded": (
        "count(*) FILTER (WHERE f.status = 'done' AND NOT f.no_answer AND NOT f.escalated"
        " AND f.down = 0)"
    ),
    "tokens_in": "coalesce(sum(f.tokens_in), 0)::bigint",
    "tokens_out": "coalesce(sum(f.tokens_out), 0)::bigint",
    "cost": "coalesce(sum(f.cost), 0)",
    "ttft_count": "count(f.ttft)",
    "ttft_sum_ms": "coalesce(sum(f.ttft), 0)",
    "total_count": "count(f.total)",
    "total_sum_ms": "coalesce(sum(f.total), 0)",
    "thumbs_up": "coalesce(sum(f.up), 0)::bigint",
    "thumbs_down": "coalesce(sum(f.down), 0)::bigint",
    "escalations": "count(*) FILTER (WHERE f.escalated)",
    "judged": "count(*) FILTER (WHERE f.judged)",
    "judge_flagged": "count(*) FILTER (WHERE f.judge_flagged)",
    "toxicity_flagged": "count(*) FILTER (WHERE f.toxicity_flagged)",
    "pii_flagged": "count(*) FILTER (WHERE f.pii_flagged)",
    "reviews": "coalesce(sum(f.reviews), 0)::bigint",
    "review_grade_sum": "coalesce(sum(f.grades), 0)::bigint",
    "flagged": "count(*) FILTER (WHERE f.flagged)",
    "cache_lookups": "count(*) FILTER (WHERE f.cache_result <> '')",
    "cache_hits": "count(*) FILTER (WHERE f.cache_result IN ('exact', 'semantic'))",
    "saved_tokens": "coalesce(sum(f.saved_tokens), 0)::bigint",
    "saved_cost": "coalesce(sum(f.saved_cost), 0)",
}
HISTOGRAMS = ("ttft_hist", "total_hist")
KEYS = ("endpoint_id", "route", "channel", "group_id", "collection_id")


def table_name(model: Any) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def histogram_sql(column: str) -> str:
    counts = ", ".join(
        f"count(*) FILTER (WHERE f.{column} = {k})" for k in range(len(LATENCY_BOUNDS) + 1)
    )
    return f"ARRAY[{counts}]::int[]"


def facts_sql(where: str, *, by_ids: bool = False) -> str:
    """One row per finished production turn matching `where` (over `t`, the turn, and `c`, its
    conversation), with everything the dashboard counts about it.

    `by_ids`: the turns are the `%(ids)s` array (a recompute), and related rows are looked up by
    it, so Postgres knows how few there are and probes indexes; otherwise (a date range on the
    dashboard) they are matched to the turns with hash joins."""
    turn, conv = table_name(Turn), table_name(Conversation)
    matching = "= ANY(%(ids)s)" if by_ids else "IN (SELECT id FROM base)"
    done = Turn.Status.DONE
    return f"""
WITH base AS (
    SELECT t.id, t.created_at, t.endpoint_id, c.channel, c.owner_id, t.status, t.no_answer,
           t.tokens_in, t.tokens_out, t.cost, t.cache_result, t.saved_tokens, t.saved_cost,
           left(regexp_replace(t.route_reason, '\\s*\\(.*$', ''), 120) AS route,
           CASE WHEN t.status = '{done}' THEN t.ttft_ms END AS ttft,
           CASE WHEN t.status = '{done}' THEN t.total_ms END AS total
    FROM {turn} t JOIN {conv} c ON c.id = t.conversation_id
    WHERE NOT t.is_replay AND t.status = ANY(%(finished)s) AND {where}
),
grp AS (
    SELECT DISTINCT ON (ug.user_id) ug.user_id, ug.group_id
    FROM auth_user_groups ug JOIN auth_group g ON g.id = ug.group_id
    WHERE ug.user_id IN (SELECT owner_id FROM base)
    ORDER BY ug.user_id, g.name = ANY(%(roles)s), g.name
),
cit AS (
    SELECT DISTINCT ON (ci.turn_id) ci.turn_id, ch.collection_id
    FROM {table_name(Citation)} ci JOIN {table_name(Chunk)} ch ON ch.id = ci.chunk_id
    WHERE ci.turn_id {matching}
    ORDER BY ci.turn_id, ci.number
),
fb AS (
    SELECT turn_id, count(*) FILTER (WHERE rating = 1) AS up,
           count(*) FILTER (WHERE rating = -1) AS down
    FROM {table_name(Feedback)} WHERE turn_id {matching} GROUP BY turn_id
),
js AS (
    SELECT s.turn_id, bool_or(NOT s.passed) AS flagged,
           bool_or(NOT s.passed AND j.kind = '{Judge.Kind.TOXICITY}') AS toxicity,
           bool_or(NOT s.passed AND j.kind = '{Judge.Kind.PII}') AS pii
    FROM {table_name(JudgeScore)} s JOIN {table_name(Judge)} j ON j.id = s.judge_id
    WHERE s.status = '{JudgeScore.Status.DONE}' AND s.turn_id {matching}
    GROUP BY s.turn_id
),
rv AS (
    SELECT turn_id, count(*) AS n,
           sum(accuracy + completeness + relevance + tone + safety) AS grades
    FROM {table_name(Review)} WHERE turn_id {matching} GROUP BY turn_id
),
f AS (
    SELECT b.*, grp.group_id, cit.collection_id,
           coalesce(fb.up, 0) AS up, coalesce(fb.down, 0) AS down,
           esc.turn_id IS NOT NULL AS escalated,
           js.turn_id IS NOT NULL AS judged,
           coalesce(js.flagged, false) AS judge_flagged,
           coalesce(js.toxicity, false) AS toxicity_flagged,
           coalesce(js.pii, false) AS pii_flagged,
           coalesce(rv.n, 0) AS reviews, coalesce(rv.grades, 0) AS grades,
           ri.turn_id IS NOT NULL AS flagged,
           width_bucket(b.ttft, %(bounds)s::float8[]) AS ttft_bucket,
           width_bucket(b.total, %(bounds)s::float8[]) AS total_bucket
    FROM base b
    LEFT JOIN grp ON grp.user_id = b.owner_id
    LEFT JOIN cit ON cit.turn_id = b.id
    LEFT JOIN fb ON fb.turn_id = b.id
    LEFT JOIN {table_name(Escalation)} esc ON esc.turn_id = b.id
    LEFT JOIN js ON js.turn_id = b.id
    LEFT JOIN rv ON rv.turn_id = b.id
    LEFT JOIN {table_name(ReviewItem)} ri ON ri.turn_id = b.id
)"""  # noqa: S608 (table names and constants only; every value is a bound parameter)


def select_sums() -> str:
    sums = [f"{expr} AS {name}" for name, expr in SUMS.items()]
    sums += [
        f"{histogram_sql('ttft_bucket')} AS ttft_hist",
        f"{histogram_sql('total_bucket')} AS total_hist",
    ]
    return ",\n    ".join(sums)


def sql_params(**extra: Any) -> dict[str, Any]:
    return {
        "finished": list(FINISHED),
        "bounds": [float(b) for b in LATENCY_BOUNDS],
        "roles": list(ROLE_PERMISSIONS),
        **extra,
    }


# --- maintaining the rollups ----------------------------------------------------------------------


def empty_totals() -> dict[str, Any]:
    totals: dict[str, Any] = dict.fromkeys(SUMS, 0)
    totals["ttft_hist"] = [0] * (len(LATENCY_BOUNDS) + 1)
    totals["total_hist"] = [0] * (len(LATENCY_BOUNDS) + 1)
    return totals


def percentile(histogram: Sequence[int], q: float) -> float | None:
    """The q-quantile (nearest rank) estimated from bucket counts, interpolated inside its bucket;
    in the open-ended last bucket, the bucket's lower bound."""
    count = sum(histogram)
    if not count:
        return None
    rank = max(1, math.ceil(q * count))
    seen = 0
    for k, n in enumerate(histogram):
        if n and seen + n >= rank:
            low = float(LATENCY_BOUNDS[k - 1]) if k else 0.0
            if k == len(LATENCY_BOUNDS):
                return low
            return low + (LATENCY_BOUNDS[k] - low) * (rank - seen) / n
        seen += n
    return None


def bucket_of(value_ms: float) -> int:
    """The histogram bucket a latency falls in (as Postgres' width_bucket counts)."""
    return sum(1 for bound in LATENCY_BOUNDS if value_ms >= bound)
