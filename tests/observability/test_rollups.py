"""The hourly rollups say exactly what the raw tables say, for every filter the dashboard has."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from chatbot.accounts.roles import ROLE_PERMISSIONS
from chatbot.models import (
    Citation,
    Escalation,
    Feedback,
    JudgeScore,
    Review,
    ReviewItem,
    Turn,
    TurnRollup,
    TurnRollupDay,
    UserDay,
)
from observability import rollups
from observability.rollups import Filters
from tests.observability.factory import START, generate

pytestmark = pytest.mark.django_db

FIRST_DAY = START.date()
LAST_DAY = FIRST_DAY + timedelta(days=2)


def _rebuild() -> int:
    hours = rollups.hours_touched(since=None, until=timezone.now())
    return rollups.hours_recompute(hours=hours)


def _group_of(user: User) -> int | None:
    """The person's team: the first non-role group by name, else their role."""
    groups = sorted(user.groups.all(), key=lambda g: (g.name in ROLE_PERMISSIONS, g.name))
    return groups[0].pk if groups else None


def _reference(filters: Filters) -> dict[date, dict[str, Any]]:
    """The dashboard's daily numbers computed in Python, turn by turn, from the ORM."""
    turns = (
        Turn.objects.filter(
            is_replay=False,
            status__in=rollups.FINISHED,
            created_at__gte=filters.start_at,
            created_at__lt=filters.end_at,
        )
        .select_related("conversation__owner")
        .order_by("pk")
    )
    ids = [t.pk for t in turns]
    ratings: dict[int, Counter[int]] = defaultdict(Counter)
    for turn_id, rating in Feedback.objects.filter(turn_id__in=ids).values_list(
        "turn_id", "rating"
    ):
        ratings[turn_id][rating] += 1
    escalated_ids = set(
        Escalation.objects.filter(turn_id__in=ids).values_list("turn_id", flat=True)
    )
    scores_by: dict[int, list[JudgeScore]] = defaultdict(list)
    for score in JudgeScore.objects.filter(turn_id__in=ids, status="done").select_related("judge"):
        scores_by[score.turn_id].append(score)
    reviews_by: dict[int, list[Review]] = defaultdict(list)
    for review in Review.objects.filter(turn_id__in=ids):
        reviews_by[review.turn_id].append(review)
    flagged_ids = set(ReviewItem.objects.filter(turn_id__in=ids).values_list("turn_id", flat=True))
    top_collection: dict[int, int] = {}
    for citation in Citation.objects.filter(turn_id__in=ids).select_related("chunk"):
        if citation.number == 1:
            top_collection[citation.turn_id] = citation.chunk.collection_id
    days: dict[date, dict[str, Any]] = defaultdict(rollups.empty_totals)
    for turn in turns:
        keys = {
            "endpoint_id": turn.endpoint_id,
            "route": turn.route_reason.split(" (")[0],
            "channel": turn.conversation.channel,
            "group_id": _group_of(turn.conversation.owner),
            "collection_id": top_collection.get(turn.pk),
        }
        if any(keys[k] != v for k, v in filters.keys().items()):
            continue
        row = days[turn.created_at.date()]
        rated = ratings[turn.pk]
        escalated = turn.pk in escalated_ids
        scores = scores_by[turn.pk]
        reviews = reviews_by[turn.pk]
        done = turn.status == Turn.Status.DONE
        row["turns"] += 1
        row[turn.status] += 1
        row["no_answer"] += turn.no_answer
        row["succeeded"] += done and not turn.no_answer and not escalated and not rated[-1]
        row["tokens_in"] += turn.tokens_in
        row["tokens_out"] += turn.tokens_out
        row["cost"] += turn.cost
        for name, value in (("ttft", turn.ttft_ms), ("total", turn.total_ms)):
            if done and value is not None:
                row[f"{name}_count"] += 1
                row[f"{name}_sum_ms"] += value
                row[f"{name}_hist"][rollups.bucket_of(value)] += 1
        row["thumbs_up"] += rated[1]
        row["thumbs_down"] += rated[-1]
        row["escalations"] += escalated
        row["judged"] += bool(scores)
        row["judge_flagged"] += any(not s.passed for s in scores)
        row["toxicity_flagged"] += any(not s.passed and s.judge.kind == "toxicity" for s in scores)
        row["pii_flagged"] += any(not s.passed and s.judge.kind == "pii" for s in scores)
        row["reviews"] += len(reviews)
        row["review_grade_sum"] += sum(sum(r.grades.values()) for r in reviews)
        row["flagged"] += turn.pk in flagged_ids
    return dict(days)


def _same(got: dict[str, Any], want: dict[str, Any]) -> None:
    for name, value in want.items():
        if name.endswith("_sum_ms"):
            assert got[name] == pytest.approx(value), name
        elif name == "cost":
            assert Decimal(got[name]) == value, name
        else:
            assert got[name] == value, name


FILTERS = [
    {},
    {"channel": "api"},
    {"route": "nothing relevant in the knowledge base"},
    {"endpoint": 0},
    {"group": "reviewer"},
    {"collection": 0},
    {"channel": "web", "endpoint": 1, "group": "aa-emea"},
]


@pytest.mark.parametrize("chosen", FILTERS)
def test_it_rolls_up_exactly_what_the_raw_tables_say(cast, chosen: dict[str, Any]) -> None:
    data = generate([cast["alice"], cast["rita"], cast["adam"]])
    _rebuild()
    keys: dict[str, Any] = {}
    if "channel" in chosen:
        keys["channel"] = chosen["channel"]
    if "route" in chosen:
        keys["route"] = chosen["route"]
    if "endpoint" in chosen:
        keys["endpoint_id"] = data.endpoints[chosen["endpoint"]].pk
    if "group" in chosen:
        keys["group_id"] = Group.objects.get(name=chosen["group"]).pk
    if "collection" in chosen:
        keys["collection_id"] = data.collections[chosen["collection"]]
    filters = Filters(start=FIRST_DAY, end=LAST_DAY, **keys)

    want = _reference(filters)
    assert sum(row["turns"] for row in want.values()) > 5, "the filter must select something"
    from_rollups = rollups.rollup_totals(filters, by="day")
    from_raw = rollups.raw_totals(filters, by="day")

    assert set(from_rollups) == set(want) == set(from_raw)
    for day, expected in want.items():
        _same(from_rollups[day], expected)
        _same(from_raw[day], expected)
    for by in ("endpoint", "group", "total"):
        rolled, raw = rollups.rollup_totals(filters, by=by), rollups.raw_totals(filters, by=by)
        assert set(rolled) == set(raw)
        for key, expected in raw.items():
            if by != "total":
                # The breakdowns carry only what their charts show.
                expected = {name: expected[name] for name in rollups.BREAKDOWN_SUMS}
            _same(rolled[key], expected)


def test_it_reads_percentiles_from_the_rollups_to_the_bucket_of_the_raw_value(cast) -> None:
    generate([cast["alice"], cast["rita"]], turns=300)
    _rebuild()
    filters = Filters(start=FIRST_DAY, end=LAST_DAY)
    values = sorted(
        float(v)
        for v in Turn.objects.filter(
            is_replay=False, status="done", total_ms__isnull=False
        ).values_list("total_ms", flat=True)
        if v is not None
    )
    histogram = rollups.rollup_totals(filters, by="total")[None]["total_hist"]
    for q in (0.5, 0.95):
        raw = values[_rank(len(values), q) - 1]
        estimate = rollups.percentile(histogram, q)
        assert estimate is not None
        k = rollups.bucket_of(raw)
        low = rollups.LATENCY_BOUNDS[k - 1] if k else 0
        high = rollups.LATENCY_BOUNDS[k] if k < len(rollups.LATENCY_BOUNDS) else low
        assert low <= estimate <= high, (q, raw, estimate)


def _rank(count: int, q: float) -> int:
    return max(1, math.ceil(q * count))


def test_it_recomputes_an_hour_idempotently_and_keeps_replays_out(cast) -> None:
    data = generate([cast["alice"], cast["rita"]], turns=120)
    _rebuild()
    before = list(TurnRollup.objects.order_by("pk").values(*rollups.SUMS, "hour", "route"))
    days_before = list(UserDay.objects.order_by("day", "user_id").values("day", "user_id", "turns"))
    _rebuild()
    after = list(TurnRollup.objects.order_by("pk").values(*rollups.SUMS, "hour", "route"))
    assert sorted(before, key=repr) == sorted(after, key=repr)
    assert days_before == list(
        UserDay.objects.order_by("day", "user_id").values("day", "user_id", "turns")
    )
    replays = [t for t in data.turns if t.is_replay and t.status in rollups.FINISHED]
    assert replays, "the generated data holds finished replays"
    production = Turn.objects.filter(is_replay=False, status__in=rollups.FINISHED).count()
    assert sum(r["turns"] for r in after) == production


def test_it_finds_the_hours_touched_since_the_last_pass(cast) -> None:
    data = generate([cast["alice"], cast["rita"]], turns=60)
    _rebuild()
    since = timezone.now()
    old = next(t for t in data.turns if t.status == Turn.Status.DONE)
    Feedback.objects.update_or_create(turn=old, user=cast["adam"], defaults={"rating": -1})

    hours = rollups.hours_touched(since=since, until=timezone.now())

    assert old.created_at.replace(minute=0, second=0, microsecond=0) in hours
    rollups.hours_recompute(hours=hours)
    filters = Filters(start=FIRST_DAY, end=LAST_DAY)
    raw = rollups.raw_totals(filters, by="total")[None]
    _same(rollups.rollup_totals(filters, by="total")[None], raw)


def test_each_daily_row_is_the_sum_of_its_days_hourly_rows(cast) -> None:
    """The dashboard reads the daily table; it must say what the hours say, after a full pass
    and after one hour of a day was redone."""
    data = generate([cast["alice"], cast["rita"], cast["adam"]], turns=150)
    _rebuild()
    keys = ("endpoint_id", "route", "channel", "group_id", "collection_id")

    def from_hours() -> dict[tuple[Any, ...], dict[str, Any]]:
        summed: dict[tuple[Any, ...], dict[str, Any]] = {}
        for row in TurnRollup.objects.values("hour", *keys, *rollups.SUMS, *rollups.HISTOGRAMS):
            key = (row.pop("hour").date(), *(row.pop(k) for k in keys))
            into = summed.setdefault(key, {**{n: 0 for n in rollups.SUMS}, "ttft_hist": None})
            for name in rollups.SUMS:
                into[name] += row[name]
            for name in rollups.HISTOGRAMS:
                into[name] = [
                    a + b
                    for a, b in zip(into.get(name) or [0] * len(row[name]), row[name], strict=True)
                ]
        return _rounded(summed)

    def daily() -> dict[tuple[Any, ...], dict[str, Any]]:
        return _rounded(
            {
                (row.pop("day"), *(row.pop(k) for k in keys)): row
                for row in TurnRollupDay.objects.values(
                    "day", *keys, *rollups.SUMS, *rollups.HISTOGRAMS
                )
            }
        )

    assert len({key[0] for key in daily()}) >= 2, "the data spans several days"
    assert daily() == from_hours()
    old = next(t for t in data.turns if t.status == Turn.Status.DONE and not t.is_replay)
    Feedback.objects.update_or_create(turn=old, user=cast["adam"], defaults={"rating": -1})
    rollups.hours_recompute(hours=[old.created_at])
    assert daily() == from_hours()
    rollups.hours_recompute(hours=[old.created_at])
    assert daily() == from_hours(), "idempotent"


def _rounded(rows: dict[tuple[Any, ...], dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Float sums (milliseconds) to a microsecond: Postgres and Python add them in other orders."""
    return {
        key: {n: round(v, 3) if isinstance(v, float) else v for n, v in row.items()}
        for key, row in rows.items()
    }
