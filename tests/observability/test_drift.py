"""Retrieval drift on the dashboard: per collection, week over week, the mean similarity of the
top passage, the no-answer rate and the share of questions whose passages nobody cited, summed
per hour with the rollups and read back in one query."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.utils import timezone

from chatbot.agent.turn import turn_run
from chatbot.chat import services
from chatbot.models import (
    AssistantSettings,
    Chunk,
    Citation,
    Conversation,
    ModelEndpoint,
    RetrievalRollup,
    Span,
    Turn,
)
from observability import drift, rollups
from tests.evaluation.judging import chunks
from tests.knowledge.test_search import make_knowledge_base

LAST_DAY = date(2026, 3, 15)
PAYROLL_QUESTION = "Who approves payroll corrections for a salary paid in error?"


def _day(day: date, hour: int = 10) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=UTC)


def _recompute(turn_ids: list[int]) -> None:
    moments = Turn.objects.filter(pk__in=turn_ids).values_list("created_at", flat=True)
    rollups.hours_recompute(hours=list(moments))


def _reference(turn_ids: list[int], start: datetime, end: datetime) -> dict[str | None, Any]:
    """The drift figures of [start, end) per collection name, computed turn by turn in Python."""
    out: dict[str | None, dict[str, Any]] = {}
    turns = Turn.objects.filter(
        pk__in=turn_ids, created_at__gte=start, created_at__lt=end, is_replay=False
    )
    for turn in turns:
        span = Span.objects.filter(turn=turn, kind="retrieval").order_by("started_at").first()
        if span is None:
            continue
        a = span.attributes
        sims = a.get("similarities") or [None] * len(a.get("chunk_ids", []))
        ranked = sorted(
            zip(a.get("chunk_ids", []), sims, strict=True),
            key=lambda pair: -(pair[1] if pair[1] is not None else float("-inf")),
        )
        chunk = Chunk.objects.filter(pk=ranked[0][0]).first() if ranked else None
        name = chunk.collection.name if chunk else None
        row = out.setdefault(name, {"turns": 0, "sims": [], "no_answer": 0, "given": 0, "un": 0})
        row["turns"] += 1
        if chunk is not None:
            row["sims"].append(a["top_similarity"])
        row["no_answer"] += turn.no_answer
        cites = list(Citation.objects.filter(turn=turn).values_list("cited", flat=True))
        row["given"] += bool(cites)
        row["un"] += bool(cites) and not any(cites)
    return out


def _check(figures: drift.Figures, expected: dict[str, Any]) -> None:
    assert figures.turns == expected["turns"]
    sims = expected["sims"]
    assert figures.similarity == (pytest.approx(sum(sims) / len(sims)) if sims else None)
    assert figures.no_answer_rate == pytest.approx(expected["no_answer"] / expected["turns"])
    given = expected["given"]
    assert figures.uncited_share == (pytest.approx(expected["un"] / given) if given else None)


# --- from real grounded turns ----------------------------------------------------------------------


async def _ask(user: User, question: str, answer: str, endpoint: Callable[..., Any]) -> int:
    await sync_to_async(endpoint)([answer], name="drift-model")
    conversation = await sync_to_async(services.conversation_create)(owner=user)
    turn = await sync_to_async(services.turn_create)(conversation=conversation, user_text=question)

    async def emit(text: str) -> None:
        pass

    await turn_run(turn_id=turn.pk, emit=emit)
    return turn.pk


@pytest.mark.django_db(transaction=True)
async def test_it_measures_drift_per_collection_from_real_grounded_turns(
    alice: User, adam: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    await sync_to_async(make_knowledge_base)()
    await AssistantSettings.objects.aupdate_or_create(
        pk=1, defaults={"grounding": "required", "retrieval_k": 3, "min_similarity": 0.3}
    )
    this_week = [
        await _ask(
            alice, "How do I reset a forgotten password?", "Click Forgot [1].", fake_endpoint
        ),
        await _ask(adam, PAYROLL_QUESTION, "The finance lead does.", fake_endpoint),
        await _ask(alice, "What is the capital of Mongolia?", "unused", fake_endpoint),
    ]
    before = await _ask(
        alice, "How can I reset my password?", "Use the sign-in page.", fake_endpoint
    )

    def measure() -> None:
        for pk in this_week:
            Turn.objects.filter(pk=pk).update(created_at=_day(LAST_DAY - timedelta(days=1)))
        Turn.objects.filter(pk=before).update(created_at=_day(LAST_DAY - timedelta(days=8)))
        ids = [*this_week, before]
        assert Turn.objects.filter(pk__in=ids, no_answer=True).count() == 1
        _recompute(ids)

        panel = drift.drift_panel(end=LAST_DAY)
        rows = {row.name: row for row in panel.rows}
        assert (panel.week_start, panel.week_end) == (LAST_DAY - timedelta(days=6), LAST_DAY)
        assert {"Help centre", "Admin handbook"} <= set(rows)
        admin = rows["Admin handbook"]
        assert admin.week.turns == 1 and admin.week.uncited_share == 1.0
        assert admin.week.no_answer_rate == 0.0 and admin.previous.turns == 0
        assert rows["Help centre"].previous.turns == 1

        end = datetime.combine(LAST_DAY + timedelta(days=1), time.min, tzinfo=UTC)
        week = _reference(ids, end - timedelta(days=7), end)
        earlier = _reference(ids, end - timedelta(days=14), end - timedelta(days=7))
        for name, row in rows.items():
            key = None if name == drift.NO_PASSAGE else name
            if key in week:
                _check(row.week, week[key])
            if key in earlier:
                _check(row.previous, earlier[key])
        assert sum(r.week.turns for r in rows.values()) == 3
        assert sum(r.week.no_answer for r in rows.values()) == 1

    await sync_to_async(measure)()


# --- from spans as grounding records them ------------------------------------------------------------


def _grounded(
    owner: User,
    moment: datetime,
    hits: list[tuple[Chunk, float | None]],
    *,
    cited: list[bool] | None = None,
    no_answer: bool = False,
    is_replay: bool = False,
    legacy: bool = False,
) -> Turn:
    """A finished turn with the retrieval span `chatbot.agent.grounding` writes (`legacy`: as
    spans did before they recorded similarities) and its citations."""
    conversation = Conversation.objects.create(owner=owner, is_replay=is_replay)
    turn = Turn.objects.create(
        conversation=conversation, user_text="q", answer="a", status=Turn.Status.DONE,
        no_answer=no_answer, is_replay=is_replay,
    )  # fmt: skip
    Turn.objects.filter(pk=turn.pk).update(created_at=moment)
    top = max((s or 0.0 for _, s in hits), default=0.0)
    attributes: dict[str, Any] = {"chunk_ids": [c.pk for c, _ in hits]}
    if not legacy:
        attributes.update(similarities=[s for _, s in hits], top_similarity=round(top, 4))
    Span.objects.create(
        turn=turn, kind="retrieval", name="hybrid_search", started_at=moment,
        attributes=attributes,
    )  # fmt: skip
    for number, (flag, (chunk, similarity)) in enumerate(
        zip(cited or [], hits[: len(cited or [])], strict=True), start=1
    ):
        Citation.objects.create(
            turn=turn, chunk=chunk, number=number, score=0.5, similarity=similarity, cited=flag
        )
    return Turn.objects.get(pk=turn.pk)


@pytest.fixture
def spans(cast: dict[str, User]) -> dict[str, Any]:
    alice = cast["alice"]
    [alpha] = chunks("alpha passage")
    [beta] = chunks("beta passage")
    week, earlier = _day(LAST_DAY - timedelta(days=2)), _day(LAST_DAY - timedelta(days=9))
    made = [
        # alpha's collection: the top similarity decides, not the rank.
        _grounded(alice, week, [(beta, 0.40), (alpha, 0.80)], cited=[False, True]),
        _grounded(alice, week, [(alpha, 0.60)], cited=[False]),
        _grounded(alice, week, [(alpha, 0.20)], no_answer=True),
        _grounded(alice, earlier, [(alpha, 0.90)], cited=[True]),
        # beta's: a span from before similarities were recorded counts under its first passage.
        _grounded(alice, week, [(beta, None), (alpha, None)], cited=[True], legacy=True),
        # nothing retrieved at all, a replay (never counts), and a turn outside both weeks.
        _grounded(alice, week, [], no_answer=True),
        _grounded(alice, week, [(alpha, 0.10)], is_replay=True),
        _grounded(alice, _day(LAST_DAY - timedelta(days=20)), [(alpha, 0.10)]),
    ]
    # A second retrieval span (a tool searching again) does not replace the first.
    Span.objects.create(
        turn=made[1], kind="retrieval", name="kb_search", started_at=week + timedelta(seconds=5),
        attributes={"chunk_ids": [beta.pk], "similarities": [0.99], "top_similarity": 0.99},
    )  # fmt: skip
    return {"alpha": alpha, "beta": beta, "turns": made}


@pytest.mark.django_db
def test_it_sums_drift_per_collection_and_recomputes_without_duplicating(spans) -> None:
    ids = [t.pk for t in spans["turns"]]
    _recompute(ids)
    rows_before = RetrievalRollup.objects.count()
    _recompute(ids)
    assert RetrievalRollup.objects.count() == rows_before, "a recompute replaces its hours"

    alpha, beta = spans["alpha"].collection, spans["beta"].collection
    rows = {row.collection_id: row for row in drift.drift_panel(end=LAST_DAY).rows}
    assert list(rows) == [alpha.pk, beta.pk, None], "busiest first, nothing retrieved last"
    a = rows[alpha.pk]
    assert (a.week.turns, a.previous.turns) == (3, 1)
    assert a.week.similarity == pytest.approx((0.8 + 0.6 + 0.2) / 3)
    assert a.previous.similarity == pytest.approx(0.9)
    assert a.similarity_delta == pytest.approx((0.8 + 0.6 + 0.2) / 3 - 0.9)
    assert a.week.no_answer_rate == pytest.approx(1 / 3) and a.previous.no_answer_rate == 0
    assert a.no_answer_delta == pytest.approx(1 / 3)
    assert a.week.uncited_share == pytest.approx(1 / 2) and a.previous.uncited_share == 0
    b = rows[beta.pk]
    assert (b.week.turns, b.week.uncited_share, b.week.similarity) == (1, 0.0, None)
    assert b.previous.turns == 0 and b.similarity_delta is None
    nothing = rows[None]
    assert (nothing.name, nothing.week.turns, nothing.week.no_answer_rate) == (
        drift.NO_PASSAGE,
        1,
        1.0,
    )

    [only] = drift.drift_panel(end=LAST_DAY, collection_id=beta.pk).rows
    assert only.collection_id == beta.pk


@pytest.mark.django_db
def test_the_rollup_pass_keeps_drift_current(spans, alice) -> None:
    _recompute([t.pk for t in spans["turns"]])
    alpha = spans["alpha"]
    before = {r.collection_id: r for r in drift.drift_panel(end=LAST_DAY).rows}
    _grounded(alice, _day(LAST_DAY), [(alpha, 0.5)], cited=[False])

    rollups.hours_recompute(hours=[_day(LAST_DAY)])

    after = {r.collection_id: r for r in drift.drift_panel(end=LAST_DAY).rows}
    assert after[alpha.collection_id].week.turns == before[alpha.collection_id].week.turns + 1
    Turn.objects.filter(pk=spans["turns"][0].pk).delete()
    rollups.hours_recompute(hours=[_day(LAST_DAY - timedelta(days=2))])
    again = {r.collection_id: r for r in drift.drift_panel(end=LAST_DAY).rows}
    assert again[alpha.collection_id].week.turns == before[alpha.collection_id].week.turns


@pytest.mark.django_db
def test_the_dashboard_shows_the_drift_panel(
    spans, rita, client_as, django_assert_max_num_queries
) -> None:
    _recompute([t.pk for t in spans["turns"]])
    client = client_as(rita)

    with django_assert_max_num_queries(26):
        response = client.get(f"/dashboard/?start=2026-03-01&end={LAST_DAY.isoformat()}")

    page = response.content.decode()
    assert response.status_code == 200
    assert "Retrieval drift, week over week" in page
    assert spans["alpha"].collection.name in page and drift.NO_PASSAGE in page
    assert "9 Mar to 15 Mar 2026" in page
    assert "+33.3 pts" in page, "alpha's no-answer rate went from 0% to 33.3%"


@pytest.mark.django_db
def test_the_drift_panel_tells_what_to_do_when_nothing_was_retrieved(alice, rita, client_as):
    conversation = Conversation.objects.create(owner=alice)
    turn = Turn.objects.create(conversation=conversation, user_text="q", status="done")
    _recompute([turn.pk])
    day = timezone.now().date().isoformat()

    page = client_as(rita).get(f"/dashboard/?start={day}&end={day}").content.decode()

    assert "No grounded turn retrieved anything in these two weeks" in page
