"""The dashboard page: numbers at a glance and chart data from the rollups, filters in the query
string, CSV export, and who may see it."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group

from chatbot.celery import app
from chatbot.models import RollupRun, Turn, TurnRollup
from observability import dashboard, rollups, services, tasks
from observability.rollups import Filters
from tests.observability.factory import START, generate

pytestmark = pytest.mark.django_db

DATES = "start=2026-03-02&end=2026-03-04"
FILTERS = Filters(start=START.date(), end=START.date() + timedelta(days=2))


@pytest.fixture
def data(cast):
    made = generate([cast["alice"], cast["rita"], cast["adam"]], turns=300)
    services.rollups_update()
    return made


def _chart_data(html: str) -> dict:
    block = re.search(r'<script id="dashboard-data" type="application/json">(.*?)</script>', html)
    assert block, "the page carries its chart data"
    return json.loads(block.group(1))


def test_it_shows_the_numbers_and_chart_data_from_the_rollups(
    data, client_as, adam, django_assert_max_num_queries
) -> None:
    client = client_as(adam)

    with django_assert_max_num_queries(25):
        response = client.get(f"/dashboard/?{DATES}")

    assert response.status_code == 200
    html = response.content.decode()
    raw = dashboard.derive(rollups.raw_totals(FILTERS, by="total")[None])
    assert f"<dd>{raw['turns']}<small>{raw['failed']} failed</small></dd>" in html
    charts = _chart_data(html)
    assert charts["labels"] == ["2026-03-02", "2026-03-03", "2026-03-04"]
    assert sum(charts["series"]["turns"]) == raw["turns"]
    assert set(charts["by_model"]["labels"]) == {"gen-small", "gen-large", "no model"}
    assert len(re.findall(r'<canvas data-chart="', html)) == 9
    assert "vendor/chart.umd.min.js" in html and "js/dashboard.js" in html
    assert "Export CSV" in html


def _close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        if isinstance(value, float):
            assert value == pytest.approx(b[key], rel=1e-9), key
        else:
            assert value == b[key], key


def test_it_serves_the_same_dashboard_from_rollups_as_from_the_raw_tables(data) -> None:
    group = Group.objects.get(name="reviewer")
    for filters in (FILTERS, Filters(start=FILTERS.start, end=FILTERS.end, group_id=group.pk)):
        from_rollups = dashboard.dashboard_build(filters)
        from_raw = dashboard.dashboard_build(filters, source="raw")
        _close(from_rollups.total, from_raw.total)
        for rolled, raw in (
            *zip(from_rollups.days, from_raw.days, strict=True),
            *zip(from_rollups.by_model, from_raw.by_model, strict=True),
            *zip(from_rollups.by_group, from_raw.by_group, strict=True),
        ):
            assert rolled[0] == raw[0]
            _close(rolled[1], raw[1])
        assert from_rollups.people == from_raw.people
        assert from_rollups.people.active > 0


def test_it_applies_the_filters_in_the_query_string(data, client_as, adam) -> None:
    endpoint = data.endpoints[0]
    response = client_as(adam).get(f"/dashboard/?{DATES}&channel=api&model={endpoint.pk}")

    assert response.status_code == 200
    filtered = Filters(start=FILTERS.start, end=FILTERS.end, channel="api", endpoint_id=endpoint.pk)
    want = rollups.raw_totals(filtered, by="total")[None]["turns"]
    assert sum(_chart_data(response.content.decode())["series"]["turns"]) == want
    assert 0 < want < Turn.objects.count()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("start=2026-03-05&end=2026-03-01", "must be on or before"),
        ("start=2024-01-01&end=2026-03-01", "at most 366 days"),
        ("start=soon", "Enter a valid date"),
        ("model=999999", "Select a valid choice"),
    ],
)
def test_it_answers_bad_filters_with_a_clear_400(client_as, adam, query, message) -> None:
    response = client_as(adam).get(f"/dashboard/?{query}")

    assert response.status_code == 400
    assert message in response.content.decode()
    assert client_as(adam).get(f"/dashboard/export.csv?{query}").status_code == 400


def test_it_exports_the_days_as_csv(data, client_as, rita) -> None:
    response = client_as(rita).get(f"/dashboard/export.csv?{DATES}")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="dashboard-2026-03-02-2026-03-04.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["day"] for r in rows] == ["2026-03-02", "2026-03-03", "2026-03-04", "total"]
    raw = rollups.raw_totals(FILTERS, by="total")[None]
    assert int(rows[-1]["turns"]) == raw["turns"]
    assert sum(int(r["turns"]) for r in rows[:-1]) == raw["turns"]


def test_it_says_what_to_do_when_there_is_nothing_to_show(client_as, adam) -> None:
    response = client_as(adam).get("/dashboard/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "No production turns in these dates" in html
    assert "dashboard-data" not in html


def test_it_lets_reviewers_read_the_dashboard(data, client_as, rita) -> None:
    client = client_as(rita)

    assert client.get(f"/dashboard/?{DATES}").status_code == 200
    alerts = client.get("/dashboard/alerts/")
    assert alerts.status_code == 200
    assert "New alert rule" not in alerts.content.decode()
    assert client.post("/dashboard/alerts/", {"name": "x"}).status_code == 403


PAGES = [
    "/dashboard/",
    "/dashboard/export.csv",
    "/dashboard/turns/",
    "/dashboard/replays/",
    "/dashboard/alerts/",
    "/metrics",
]


@pytest.mark.parametrize("who", ["alice", "nora"])
def test_it_refuses_agents_and_nora_on_the_dashboard(client_as, cast, who) -> None:
    client = client_as(cast[who])

    for url in PAGES:
        assert client.get(url).status_code == 403, url
    nav = client.get("/dashboard/").content.decode()
    assert 'href="/dashboard/"' not in nav


def test_it_keeps_the_rollups_current_pass_after_pass(data) -> None:
    first = RollupRun.objects.get()
    assert first.status == RollupRun.Status.DONE and first.since is None
    assert first.hours >= 72
    rows = TurnRollup.objects.count()

    second = services.rollups_update()

    assert second.since == first.until
    # Only hours with recent changes (here: judge scores just written, within the slack kept for
    # late retries) are redone, and redoing them changes nothing.
    assert second.hours < first.hours
    assert TurnRollup.objects.count() == rows
    total = rollups.rollup_totals(FILTERS, by="total")[None]
    assert total["turns"] == rollups.raw_totals(FILTERS, by="total")[None]["turns"]


def test_it_schedules_the_rollups_and_alerts_in_beat() -> None:
    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert tasks.rollups_update_task.name in app.tasks
    for name in (
        "observability.rollups_update",
        "observability.rollups_recompute_recent",
        "observability.alerts_evaluate",
    ):
        assert name in scheduled
        assert name in app.tasks


@pytest.mark.django_db
def test_it_lists_each_route_seen_once_in_order(django_assert_num_queries) -> None:
    hour = START.replace(minute=0, second=0, microsecond=0)
    for i, route in enumerate(["rule: cheap", "", "catalogue default", "rule: cheap", "", "z"]):
        TurnRollup.objects.create(hour=hour + timedelta(hours=i), route=route, channel="web")

    with django_assert_num_queries(1):
        routes = dashboard.routes_known()

    assert routes == ["", "catalogue default", "rule: cheap", "z"]
    TurnRollup.objects.all().delete()
    assert dashboard.routes_known() == []


def test_it_counts_active_and_returning_people_as_the_raw_turns_say(data) -> None:
    """Counted in the database from the daily (person, day) rows: the same as from the turns."""
    first = START.date()
    filters = Filters(start=first, end=first + timedelta(days=2))
    seen: dict[int, set] = {}
    for turn in Turn.objects.filter(
        is_replay=False,
        status__in=rollups.FINISHED,
        created_at__gte=filters.start_at,
        created_at__lt=filters.end_at,
    ).select_related("conversation"):
        seen.setdefault(turn.conversation.owner_id, set()).add(turn.created_at.date())
    per_day: dict = {}
    for days in seen.values():
        for day in days:
            per_day[day] = per_day.get(day, 0) + 1
    assert len(per_day) >= 2 and any(len(days) > 1 for days in seen.values())

    for source in ("rollups", "raw"):
        people = dashboard.people(filters, source=source)
        assert people.active == len(seen), source
        assert people.returning == sum(len(days) > 1 for days in seen.values()), source
        assert people.per_day == per_day, source
