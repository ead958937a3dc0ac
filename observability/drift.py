"""Retrieval drift: week over week, per collection, how similar the top passage was, how often the
assistant said it does not know, and how often the passages it was given went uncited.

Where the facts live: each grounded turn's first `retrieval` span records `top_similarity` and,
in rank order, the `chunk_ids` and `similarities` of what retrieval returned
(`chatbot.agent.grounding`); `Turn.no_answer` says it answered "I don't know"; `Citation.cited`
says which numbered passages the answer used. A turn counts under the collection of the passage
with the top similarity (for a refused turn too, which has no citation to go by), or under no
collection when retrieval returned nothing.

Reading spans' JSON for every turn of two weeks would be a scan the dashboard cannot afford at a
million turns, so the per-turn facts are summed per hour into `RetrievalRollup` rows, in the same
pass (and under the same lock) that recomputes `TurnRollup` (`observability.rollups`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import connection, transaction

from chatbot.models import Chunk, Citation, Collection, RetrievalRollup, Span, Turn
from observability.facts import FINISHED, table_name


def clear_sql() -> str:
    return f"DELETE FROM {table_name(RetrievalRollup)} WHERE hour = ANY(%(hours)s)"  # noqa: S608


def insert_sql() -> str:
    """Sums the drift facts of the turns `%(ids)s` per (hour, collection) into the rollup."""
    turn, span = table_name(Turn), table_name(Span)
    return f"""
WITH base AS (
    SELECT t.id, t.created_at, t.no_answer FROM {turn} t
    WHERE t.id = ANY(%(ids)s) AND NOT t.is_replay AND t.status = ANY(%(finished)s)
),
sp AS (
    SELECT DISTINCT ON (s.turn_id) s.turn_id, s.attributes AS a
    FROM {span} s
    WHERE s.turn_id = ANY(%(ids)s) AND s.kind = '{Span.Kind.RETRIEVAL}'
    ORDER BY s.turn_id, s.started_at
),
top AS (
    SELECT sp.turn_id,
           CASE WHEN jsonb_typeof(sp.a -> 'top_similarity') = 'number'
                THEN (sp.a ->> 'top_similarity')::float8 END AS similarity,
           (SELECT (c.value #>> '{{}}')::bigint
            FROM jsonb_array_elements(
                     CASE WHEN jsonb_typeof(sp.a -> 'chunk_ids') = 'array'
                          THEN sp.a -> 'chunk_ids' ELSE '[]'::jsonb END
                 ) WITH ORDINALITY AS c(value, n)
            LEFT JOIN jsonb_array_elements(
                     CASE WHEN jsonb_typeof(sp.a -> 'similarities') = 'array'
                          THEN sp.a -> 'similarities' ELSE '[]'::jsonb END
                 ) WITH ORDINALITY AS v(value, n) ON v.n = c.n
            ORDER BY CASE WHEN jsonb_typeof(v.value) = 'number'
                          THEN (v.value #>> '{{}}')::float8 END DESC NULLS LAST, c.n
            LIMIT 1) AS chunk_id
    FROM sp
),
cit AS (
    SELECT turn_id, bool_or(cited) AS any_cited
    FROM {table_name(Citation)} WHERE turn_id = ANY(%(ids)s) GROUP BY turn_id
),
f AS (
    SELECT b.created_at, b.no_answer, ch.collection_id,
           CASE WHEN ch.id IS NOT NULL THEN top.similarity END AS similarity,
           cit.turn_id IS NOT NULL AS given, coalesce(NOT cit.any_cited, false) AS uncited
    FROM base b
    JOIN top ON top.turn_id = b.id
    LEFT JOIN {table_name(Chunk)} ch ON ch.id = top.chunk_id
    LEFT JOIN cit ON cit.turn_id = b.id
)
INSERT INTO {table_name(RetrievalRollup)}
    (hour, collection_id, turns, similarity_sum, similarity_count, no_answer, with_passages,
     uncited, computed_at)
SELECT date_trunc('hour', f.created_at), f.collection_id, count(*),
       coalesce(sum(f.similarity), 0), count(f.similarity),
       count(*) FILTER (WHERE f.no_answer), count(*) FILTER (WHERE f.given),
       count(*) FILTER (WHERE f.uncited), now()
FROM f
GROUP BY 1, 2"""  # noqa: S608 (table names and constants only; every value is a bound parameter)


def hours_clear(cursor: Any, hours: Sequence[datetime]) -> None:
    cursor.execute(clear_sql(), {"hours": list(hours)})


def turns_insert(cursor: Any, ids: Sequence[int]) -> None:
    """Add the drift rows of the turns `ids` (their hours cleared first by the caller)."""
    cursor.execute(insert_sql(), {"ids": list(ids), "finished": list(FINISHED)})


@transaction.atomic
def drift_recompute(*, hours: Iterable[datetime]) -> int:
    """Replace the drift rows of `hours` with what the raw tables say now (for a week the rollup
    pass has not seen, e.g. before this rollup existed). Under the rollups' lock."""
    wanted = sorted({h.replace(minute=0, second=0, microsecond=0) for h in hours})
    if not wanted:
        return 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext('observability.rollups'))")
        hours_clear(cursor, wanted)
        for start in range(0, len(wanted), 7 * 24):
            batch = wanted[start : start + 7 * 24]
            cursor.execute(
                f"""SELECT t.id FROM unnest(%(hours)s::timestamptz[]) AS h(hour)
JOIN {table_name(Turn)} t ON t.created_at >= h.hour AND t.created_at < h.hour + interval '1 hour'
WHERE NOT t.is_replay AND t.status = ANY(%(finished)s)""",  # noqa: S608
                {"hours": batch, "finished": list(FINISHED)},
            )
            ids = [row[0] for row in cursor.fetchall()]
            if ids:
                turns_insert(cursor, ids)
    return len(wanted)


# --- reading ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    turns: int = 0
    similarity_sum: float = 0.0
    similarity_count: int = 0
    no_answer: int = 0
    with_passages: int = 0
    uncited: int = 0

    @property
    def similarity(self) -> float | None:
        return self.similarity_sum / self.similarity_count if self.similarity_count else None

    @property
    def no_answer_rate(self) -> float | None:
        return self.no_answer / self.turns if self.turns else None

    @property
    def uncited_share(self) -> float | None:
        return self.uncited / self.with_passages if self.with_passages else None


def _delta(now: float | None, before: float | None) -> float | None:
    return None if now is None or before is None else now - before


@dataclass(frozen=True)
class DriftRow:
    collection_id: int | None
    name: str
    week: Figures
    previous: Figures

    @property
    def similarity_delta(self) -> float | None:
        return _delta(self.week.similarity, self.previous.similarity)

    @property
    def no_answer_delta(self) -> float | None:
        return _delta(self.week.no_answer_rate, self.previous.no_answer_rate)

    @property
    def uncited_delta(self) -> float | None:
        return _delta(self.week.uncited_share, self.previous.uncited_share)

    def as_json(self) -> dict[str, Any]:
        def side(f: Figures) -> dict[str, Any]:
            return {
                "turns": f.turns,
                "similarity": f.similarity,
                "no_answer_rate": f.no_answer_rate,
                "uncited_share": f.uncited_share,
                "with_passages": f.with_passages,
            }

        return {
            "collection_id": self.collection_id,
            "name": self.name,
            "week": side(self.week),
            "previous": side(self.previous),
            "similarity_delta": self.similarity_delta,
            "no_answer_delta": self.no_answer_delta,
            "uncited_delta": self.uncited_delta,
        }


NO_PASSAGE = "Nothing retrieved"


def drift_rows(
    *, start: datetime, split: datetime, end: datetime, collection_id: int | None = None
) -> list[DriftRow]:
    """Per collection: the figures of [split, end) (the week) and of [start, split) (the week
    before), from the rollup, in one indexed range read. Busiest collection first."""
    where = "r.hour >= %(start)s AND r.hour < %(end)s"
    params: dict[str, Any] = {"start": start, "split": split, "end": end}
    if collection_id is not None:
        where += " AND r.collection_id = %(collection)s"
        params["collection"] = collection_id
    sums = ", ".join(
        f"sum(r.{name})"
        for name in (
            "turns",
            "similarity_sum",
            "similarity_count",
            "no_answer",
            "with_passages",
            "uncited",
        )
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT r.collection_id, c.name, r.hour >= %(split)s AS this_week, {sums}
FROM {table_name(RetrievalRollup)} r LEFT JOIN {table_name(Collection)} c ON c.id = r.collection_id
WHERE {where} GROUP BY 1, 2, 3""",  # noqa: S608
            params,
        )
        found = cursor.fetchall()
    weeks: dict[int | None, dict[bool, Figures]] = {}
    names: dict[int | None, str] = {}
    for pk, name, this_week, *values in found:
        names[pk] = name or NO_PASSAGE
        weeks.setdefault(pk, {})[this_week] = Figures(
            int(values[0]), float(values[1]), int(values[2]), int(values[3]), int(values[4]),
            int(values[5]),
        )  # fmt: skip
    rows = [
        DriftRow(pk, names[pk], both.get(True, Figures()), both.get(False, Figures()))
        for pk, both in weeks.items()
    ]
    # Collections first (busiest this week), "nothing retrieved" last.
    return sorted(rows, key=lambda r: (r.collection_id is None, -r.week.turns, r.name))


@dataclass(frozen=True)
class DriftPanel:
    week_start: date
    week_end: date
    rows: list[DriftRow]


def drift_panel(*, end: date, collection_id: int | None = None) -> DriftPanel:
    """The dashboard's panel: the 7 days ending `end` (UTC, like the rest of the dashboard)
    against the 7 before."""
    last = datetime.combine(end + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    split, start = last - timedelta(days=7), last - timedelta(days=14)
    rows = drift_rows(start=start, split=split, end=last, collection_id=collection_id)
    return DriftPanel(week_start=end - timedelta(days=6), week_end=end, rows=rows)
