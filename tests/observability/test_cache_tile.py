"""The answer cache on the dashboard (hit rate, saved tokens and cost over the chosen days, from
the rollups) and in /metrics (lookups by result, saved tokens and cost)."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User

from chatbot.agent.cache import answer_cache_store
from chatbot.agent.turn import turn_run
from chatbot.chat import services
from chatbot.models import Turn
from observability import dashboard, rollups
from observability.rollups import Filters
from observability.services import rollups_update

pytestmark = pytest.mark.django_db

DAY = datetime(2026, 4, 6, 10, tzinfo=UTC)
DATES = "start=2026-04-06&end=2026-04-06"


def _turns(owner: User) -> None:
    """Six finished turns on one day: two that did not look (a tool's answer, a follow-up), two
    misses and two hits that each saved what their original cost. A replay hit never counts."""
    conversation = services.conversation_create(owner=owner)
    rows = [
        ("", 0, "0", False),
        ("", 0, "0", False),
        ("miss", 0, "0", False),
        ("miss", 0, "0", False),
        ("exact", 600, "0.012", False),
        ("semantic", 900, "0.018", False),
        ("exact", 5000, "1", True),
    ]
    for n, (result, tokens, cost, replay) in enumerate(rows):
        turn = Turn.objects.create(
            conversation=conversation,
            user_text=f"question {n}",
            answer="answer",
            status=Turn.Status.DONE,
            ttft_ms=10.0,
            total_ms=20.0,
            cache_result=result,
            saved_tokens=tokens,
            saved_cost=Decimal(cost),
            is_replay=replay,
        )
        Turn.objects.filter(pk=turn.pk).update(created_at=DAY + timedelta(minutes=n))


def test_it_shows_the_hit_rate_and_what_the_cache_saved(alice, rita, client_as) -> None:
    _turns(alice)
    rollups_update()

    html = client_as(rita).get(f"/dashboard/?{DATES}").content.decode()

    tile = re.search(r"<dt>Cache hit rate</dt><dd>(.*?)</dd>", html)
    assert tile is not None
    assert tile.group(1) == "50.0%<small>2 of 4 · saved 1,500 tokens, $0.0300</small>"
    filters = Filters(start=DAY.date(), end=DAY.date())
    raw = dashboard.derive(rollups.raw_totals(filters, by="total")[None])
    rolled = dashboard.derive(rollups.rollup_totals(filters, by="total")[None])
    for name in ("cache_lookups", "cache_hits", "cache_hit_rate", "saved_tokens", "saved_cost"):
        assert raw[name] == rolled[name], name
    assert (rolled["cache_lookups"], rolled["cache_hits"], rolled["saved_tokens"]) == (4, 2, 1500)

    export = client_as(rita).get(f"/dashboard/export.csv?{DATES}").content.decode()
    total = list(csv.DictReader(io.StringIO(export)))[-1]
    assert (total["cache_hits"], total["cache_hit_rate"], total["saved_tokens"]) == (
        "2",
        "0.5",
        "1500",
    )


def test_it_says_when_no_turn_looked_the_cache_up(alice, rita, nora, client_as) -> None:
    conversation = services.conversation_create(owner=alice)
    turn = Turn.objects.create(
        conversation=conversation, user_text="q", answer="a", status=Turn.Status.DONE
    )
    Turn.objects.filter(pk=turn.pk).update(created_at=DAY)
    rollups_update()

    html = client_as(rita).get(f"/dashboard/?{DATES}").content.decode()
    assert "<dt>Cache hit rate</dt><dd>—<small>No turn looked up the answer cache</small>" in html
    assert client_as(nora).get(f"/dashboard/?{DATES}").status_code == 403


def _value(text: str, name: str, **labels: str) -> float:
    """One sample of the exposition text (labels in any order), 0 when absent."""
    wanted = sorted(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        match = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if match is None or match.group(1) != name:
            continue
        got = sorted(filter(None, (match.group(2) or "").split(",")))
        if got == wanted:
            return float(match.group(3))
    return 0.0


@pytest.mark.django_db(transaction=True)
def test_it_counts_lookups_hits_and_savings_in_metrics(alice, adam, fake_endpoint, client_as):
    fake_endpoint(["The link expires after 30 minutes."])
    before = client_as(adam).get("/metrics").content.decode()

    def ask() -> Turn:
        turn = services.turn_create(
            conversation=services.conversation_create(owner=alice),
            user_text="How long is the reset link valid?",
        )

        async def emit(_: str) -> None:
            pass

        async_to_sync(turn_run)(turn_id=turn.pk, emit=emit)
        return Turn.objects.get(pk=turn.pk)

    first = ask()
    # Evaluation stores an answer once every judge passed it (tests/agent/test_answer_cache.py).
    entry = answer_cache_store(turn_id=first.pk)
    assert entry is not None
    hit = ask()
    assert hit.cache_result == Turn.Cache.EXACT
    after = client_as(adam).get("/metrics").content.decode()

    def grew(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert grew("chatbot_cache_lookups_total", result="miss", match="none") == 1
    assert grew("chatbot_cache_lookups_total", result="hit", match="exact") == 1
    assert grew("chatbot_cache_saved_tokens_total") == entry.tokens > 0
    assert grew("chatbot_cache_saved_cost_dollars_total") == pytest.approx(float(entry.cost))
    assert client_as(alice).get("/metrics").status_code == 403
