"""The dashboard at 1,000,000 turns: its server time from the rollups (daily rows, built from the
hourly ones) versus the same numbers computed from the raw tables.

    .venv/bin/python tests/benchmarks/bench_dashboard.py [--turns 1000000] [--days 180]
        [--rounds 5] [--keep]

Data: a database of its own (`bench_dashboard`, on the same Postgres server as the dev database;
the embedded services start if needed), migrated, then loaded server-side with INSERT ... SELECT
over generate_series (no rows cross the wire): 300 people in three team groups, 60,000
conversations (85% web), --turns turns spread evenly over the last --days days (90% answered, 5%
failed, 3% cancelled, 10% "not in the knowledge base"; three models with their own prices;
latencies drawn from exponential tails), and around them what production accumulates: thumbs on
6% of answers, escalations on 2%, three judges' scores on 60% of answers, review flags on 4% of
turns and reviews on half of those, and citations of 1-3 chunks (from three collections) on
60%. All indexes are in place during the load, as in production; ANALYZE
follows. The rollups are then built by the same code the periodic task runs (timed and printed).
--keep leaves the database for the next run, which reuses it when it holds --turns turns.

Measured, in alternating order, --rounds times each (after one warm-up of each):
  rollups: `observability.dashboard.dashboard_build(filters)`: everything the dashboard page shows
           (totals, a row per day, per model, per group, active and returning people);
  raw:     the same call with `source="raw"`: identical numbers from the raw tables through the
           same per-turn SQL (checked equal once per view);
  page:    GET /dashboard/ through Django's test client as an admin: the whole request (rollups,
           template, chart data), for scale.
Views: the default (last 30 days), 30 days filtered to web turns of one model, and all --days days.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, connections, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from chatbot.runtime.embedded import ensure_services  # noqa: E402

BENCH_DB = "bench_dashboard"
# The database the settings name (the dev database); the benchmark's own is created beside it.
HOME_DB = settings.DATABASES["default"]["NAME"]


def _use_bench_database(*, fresh: bool) -> None:
    """Point the default connection at the benchmark's own database, creating it if needed."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB])
        exists = cursor.fetchone() is not None
    connection.close()
    if exists and fresh:
        connection.settings_dict["NAME"] = HOME_DB
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE {BENCH_DB} WITH (FORCE)")
        exists = False
    if not exists:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {BENCH_DB}")
    connections.close_all()
    settings.DATABASES["default"]["NAME"] = BENCH_DB
    connection.settings_dict["NAME"] = BENCH_DB
    call_command("migrate", verbosity=0)


def _sql(statement: str, params: dict[str, Any] | None = None) -> float:
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(statement, params or {})
    return time.perf_counter() - started


def _count(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608
        return int(cursor.fetchone()[0])


def _load(turns: int, days: int) -> None:
    from django.contrib.auth.models import Group, User

    from chatbot.accounts.services import roles_ensure
    from chatbot.models import Chunk, Collection, Document, Judge, ModelEndpoint, Source
    from chatbot.models.knowledge import EMBEDDING_DIMENSIONS

    roles_ensure()
    teams = [Group.objects.get_or_create(name=name)[0] for name in ("amer", "apac", "emea")]
    agent = Group.objects.get(name="agent")
    people = User.objects.bulk_create(User(username=f"bench-{i:03d}") for i in range(300))
    for i, person in enumerate(people):
        person.groups.add(teams[i % 3], agent)
    User.objects.create_superuser("bench-admin", "bench@example.com", "bench-password-1")
    for name, price_in, price_out in (("small", 0.1, 0.4), ("large", 2.5, 10), ("premium", 15, 60)):
        ModelEndpoint.objects.create(
            name=f"bench-{name}",
            provider=ModelEndpoint.Provider.FAKE,
            model_id="fake-list-chat",
            price_input_per_mtok=price_in,
            price_output_per_mtok=price_out,
        )
    for name in ("handbook", "tickets", "products"):
        collection = Collection.objects.create(name=f"bench-{name}")
        source = Source.objects.create(
            collection=collection, name="bench", kind="path", location="-"
        )
        for d in range(10):
            document = Document.objects.create(
                source=source, collection=collection, external_id=f"{name}-{d}", title=f"{name} {d}"
            )
            Chunk.objects.create(
                document=document,
                collection=collection,
                ordinal=0,
                text=f"{name} passage {d}",
                embedding=[1.0] + [0.0] * (EMBEDDING_DIMENSIONS - 1),
            )
    for name, kind in (("toxicity", "toxicity"), ("pii", "pii"), ("format", "format")):
        Judge.objects.create(name=name, kind=kind)

    steps: list[tuple[str, str]] = [
        (
            "conversations",
            """
INSERT INTO chatbot_conversation (owner_id, title, channel, is_replay, created_at, updated_at)
SELECT u.ids[1 + floor(random() * u.n)::int], 'bench ' || g,
       CASE WHEN random() < 0.85 THEN 'web' ELSE 'api' END, false, now(), now()
FROM generate_series(1, 60000) g,
     (SELECT array_agg(id) ids, count(*) n FROM auth_user WHERE username LIKE 'bench-0%%'
       OR username LIKE 'bench-1%%' OR username LIKE 'bench-2%%') u""",
        ),
        (
            "turns",
            """
INSERT INTO chatbot_turn (conversation_id, user_text, answer, status, endpoint_id, route_reason,
    tokens_in, tokens_out, tokens_estimated, cost, ttft_ms, total_ms, error, no_answer,
    kb_versions, is_replay, created_at, finished_at, cache_result, saved_tokens, saved_cost,
    redacted)
SELECT c.ids[1 + floor(r.r0 * c.n)::int], 'benchmark question ' || g, 'benchmark answer ' || g,
       r.status,
       CASE WHEN r.no_answer THEN NULL ELSE e.ids[r.model] END,
       CASE WHEN r.no_answer
            THEN 'nothing relevant in the knowledge base (top similarity 0.21 < 0.30)'
            WHEN r.r4 < 0.85 THEN 'catalogue default' ELSE 'requested by the caller' END,
       r.tin, r.tout, false,
       CASE WHEN r.no_answer THEN 0 ELSE (r.tin * e.pin[r.model] + r.tout * e.pout[r.model]) / 1e6 END,
       CASE WHEN r.status = 'failed' THEN NULL ELSE r.ttft END,
       r.ttft + 400 + 3500 * -ln(1 - r.r5),
       CASE WHEN r.status = 'failed' THEN 'The model failed.' ELSE '' END,
       r.no_answer, '{}'::jsonb, false, r.moment, r.moment + interval '5 seconds',
       -- The answer cache: looked up for most turns, a hit for about one in ten of those.
       CASE WHEN r.r4 < 0.15 THEN '' WHEN r.r4 < 0.80 THEN 'miss'
            WHEN r.r4 < 0.85 THEN 'exact' ELSE 'miss' END,
       CASE WHEN r.r4 >= 0.80 AND r.r4 < 0.85 THEN r.tin + r.tout ELSE 0 END,
       CASE WHEN r.r4 >= 0.80 AND r.r4 < 0.85 AND NOT r.no_answer
            THEN (r.tin * e.pin[r.model] + r.tout * e.pout[r.model]) / 1e6 ELSE 0 END,
       '{}'::jsonb
FROM generate_series(1, %(turns)s) g
CROSS JOIN LATERAL (
    SELECT random() r0,
           CASE WHEN x < 0.90 THEN 'done' WHEN x < 0.95 THEN 'failed' ELSE 'cancelled' END status,
           CASE WHEN y < 0.6 THEN 1 WHEN y < 0.9 THEN 2 ELSE 3 END model,
           random() < 0.10 no_answer, random() r4, random() r5,
           200 + floor(random() * 1500)::int tin, 20 + floor(random() * 400)::int tout,
           60 + 350 * -ln(1 - random()) ttft,
           now() - random() * %(days)s * interval '1 day' moment
    FROM (SELECT random() x, random() y WHERE g = g) draw
) r,
(SELECT array_agg(id ORDER BY id) ids, count(*) n FROM chatbot_conversation) c,
(SELECT array_agg(id ORDER BY id) ids, array_agg(price_input_per_mtok ORDER BY id) pin,
        array_agg(price_output_per_mtok ORDER BY id) pout FROM chatbot_modelendpoint) e""",
        ),
        (
            "feedback",
            """
INSERT INTO chatbot_feedback (turn_id, user_id, rating, comment, created_at, updated_at)
SELECT t.id, c.owner_id, CASE WHEN random() < 0.75 THEN 1 ELSE -1 END, '', t.created_at,
       t.created_at
FROM chatbot_turn t JOIN chatbot_conversation c ON c.id = t.conversation_id
WHERE t.status = 'done' AND random() < 0.06""",
        ),
        (
            "escalations",
            """
INSERT INTO chatbot_escalation (turn_id, requested_by_id, reason, status, created_at, answer)
SELECT t.id, c.owner_id, '', 'open', t.created_at, ''
FROM chatbot_turn t JOIN chatbot_conversation c ON c.id = t.conversation_id
WHERE random() < 0.02""",
        ),
        (
            "judge scores",
            """
INSERT INTO chatbot_judgescore (turn_id, judge_id, score, passed, details, status, error,
    attempts, tokens_in, tokens_out, cost, duration_ms, created_at, updated_at, flag_ignored)
SELECT t.id, j.id, s.score, s.score >= 0.5, '{}'::jsonb, 'done', '', 1, 0, 0, 0, 5,
       t.created_at, t.created_at, false
FROM chatbot_turn t CROSS JOIN chatbot_judge j
CROSS JOIN LATERAL (SELECT CASE WHEN random() < CASE j.kind WHEN 'format' THEN 0.9
    WHEN 'toxicity' THEN 0.98 ELSE 0.99 END THEN 1.0 ELSE 0.0 END score
    WHERE t.id = t.id AND j.id = j.id) s
WHERE t.status = 'done' AND t.id %% 10 < 6""",
        ),
        (
            "review flags",
            """
INSERT INTO chatbot_reviewitem (turn_id, priority, reasons, reviews_needed, status, created_at)
SELECT t.id, 50, '[]'::jsonb, 1, 'open', t.created_at FROM chatbot_turn t
WHERE random() < 0.04""",
        ),
        (
            "reviews",
            """
INSERT INTO chatbot_review (item_id, turn_id, reviewer_id, accuracy, completeness, relevance,
    tone, safety, corrected_answer, causes, comment, approved, created_at)
SELECT i.id, i.turn_id, (SELECT id FROM auth_user WHERE username = 'bench-admin'),
       1 + floor(random() * 5)::int, 1 + floor(random() * 5)::int, 1 + floor(random() * 5)::int,
       1 + floor(random() * 5)::int, 1 + floor(random() * 5)::int, '', '[]'::jsonb, '', false,
       i.created_at
FROM chatbot_reviewitem i WHERE i.id %% 2 = 0""",
        ),
        (
            "citations",
            """
INSERT INTO chatbot_citation (turn_id, chunk_id, number, score, similarity, cited)
SELECT t.id, ch.ids[1 + ((t.id * 7 + k.n * 13) %% ch.size)::int], k.n, 0.5, 0.8, k.n = 1
FROM chatbot_turn t
CROSS JOIN LATERAL generate_series(1, 1 + (t.id %% 3)::int) k(n),
(SELECT array_agg(id ORDER BY id) ids, count(*) size FROM chatbot_chunk) ch
WHERE t.status = 'done' AND NOT t.no_answer AND t.id %% 5 < 3""",
        ),
    ]
    # One transaction: an interrupted load leaves no half-loaded database for --keep to reuse.
    with transaction.atomic():
        _sql("SELECT setseed(0.42)")
        for name, statement in steps:
            seconds = _sql(statement, {"turns": turns, "days": days})
            print(f"  loaded {name:<14} in {seconds:6.1f} s")
    seconds = _sql("ANALYZE")
    print(f"  ANALYZE in {seconds:.1f} s")


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _time(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the database for the next run")
    args = parser.parse_args()

    ensure_services()
    _use_bench_database(fresh=False)
    from chatbot.models import ModelEndpoint, Turn, TurnRollup

    have = Turn.objects.count()
    if have != args.turns:
        print(f"Loading {args.turns:,} turns over {args.days} days into '{BENCH_DB}' ...")
        _use_bench_database(fresh=True)
        _load(args.turns, args.days)
    else:
        print(f"Reusing '{BENCH_DB}' with {have:,} turns.")
    from django.contrib.auth.models import User

    from observability import dashboard, rollups
    from observability.rollups import Filters

    if not TurnRollup.objects.exists() or have != args.turns:
        started = time.perf_counter()
        hours = rollups.hours_touched(since=None, until=timezone.now())
        rollups.hours_recompute(hours=hours)
        _sql("ANALYZE chatbot_turnrollup")
        print(f"Built the rollups ({len(hours):,} hours) in {time.perf_counter() - started:.1f} s")
    print(
        f"Rows: {_count('chatbot_turn'):,} turns, {_count('chatbot_judgescore'):,} judge scores, "
        f"{_count('chatbot_citation'):,} citations, {_count('chatbot_span'):,} spans, "
        f"{_count('chatbot_feedback'):,} thumbs -> {_count('chatbot_turnrollup'):,} rollup rows, "
        f"{_count('chatbot_userday'):,} user-days"
    )

    today = timezone.now().date()
    model = ModelEndpoint.objects.get(name="bench-large")
    views = {
        "last 30 days": (Filters(start=today - timedelta(days=29), end=today), ""),
        "30 days, web, one model": (
            Filters(
                start=today - timedelta(days=29), end=today, channel="web", endpoint_id=model.pk
            ),
            f"channel=web&model={model.pk}",
        ),
        f"all {args.days} days": (
            Filters(start=today - timedelta(days=args.days), end=today),
            f"start={(today - timedelta(days=args.days)).isoformat()}&end={today.isoformat()}",
        ),
    }
    client = Client()
    # force_login: django-axes's backend refuses a sign-in with no request, as Client.login() makes.
    client.force_login(User.objects.get(username="bench-admin"))
    print(f"\n{'view':<26} {'rollups':>10} {'raw':>11} {'ratio':>8} {'page':>10}")
    for name, (filters, query) in views.items():
        built = dashboard.dashboard_build(filters)
        raw = dashboard.dashboard_build(filters, source="raw")
        assert built.total["turns"] == raw.total["turns"], "rollups and raw disagree"
        assert built.total["cost"] == raw.total["cost"], "rollups and raw disagree"
        page = client.get(f"/dashboard/?{query}")
        assert page.status_code == 200, page.status_code
        fast: list[float] = []
        slow: list[float] = []
        pages: list[float] = []

        def rollups_call(f: Filters = filters) -> Any:
            return dashboard.dashboard_build(f)

        def raw_call(f: Filters = filters) -> Any:
            return dashboard.dashboard_build(f, source="raw")

        def page_call(q: str = query) -> Any:
            return client.get(f"/dashboard/?{q}")

        for i in range(args.rounds):
            if i % 2 == 0:
                fast.append(_time(rollups_call))
                slow.append(_time(raw_call))
            else:
                slow.append(_time(raw_call))
                fast.append(_time(rollups_call))
            pages.append(_time(page_call))
        ratio = statistics.median(slow) / statistics.median(fast)
        print(
            f"{name:<26} {_median_ms(fast):>8.1f}ms {_median_ms(slow):>9.1f}ms {ratio:>7.1f}x "
            f"{_median_ms(pages):>8.1f}ms   ({built.total['turns']:,} turns)"
        )
    print("\nMedians of", args.rounds, "rounds; rollups and raw compute the same numbers.")
    if not args.keep:
        connections.close_all()
        connection.settings_dict["NAME"] = settings.DATABASES["default"]["NAME"] = HOME_DB
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE {BENCH_DB} WITH (FORCE)")
        print(f"Dropped '{BENCH_DB}' (use --keep to reuse it).")


if __name__ == "__main__":
    main()
