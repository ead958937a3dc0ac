"""A turn's trace page: the waterfall of its retrieval, model, tool and judge spans, inputs and
outputs with personal data redacted as the policy says; and the turn search page."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import User

from chatbot.accounts.visibility import HIDDEN_PASSAGE
from chatbot.agent import records
from chatbot.chat import services
from chatbot.llm.types import Usage
from chatbot.models import Feedback, JudgeScore, ReviewItem, Span, Turn
from chatbot.telemetry.tracing import Tracer
from evaluation import services as evaluation
from tests.evaluation.judging import ADMINS_ONLY_PASSAGE, PASSWORD_CHUNK, admins_only_turn, chunks

pytestmark = pytest.mark.django_db

EMAIL = "jane.doe@example.org"


def traced_turn(user: User, *, question: str = f"Reset the password for {EMAIL}") -> Turn:
    """A turn recorded as the turn loop records one: retrieval, a tool call and a model call under
    the agent span, written in one batch by turn_finish; then two judges score it."""
    [chunk] = chunks(PASSWORD_CHUNK)
    conversation = services.conversation_create(owner=user)
    turn = services.turn_create(conversation=conversation, user_text=question)
    tracer = Tracer()
    with tracer.span("agent", "turn") as root:
        root.attributes["route"] = "catalogue default"
        with tracer.span(
            "retrieval", "hybrid_search", chunk_ids=[chunk.pk], relevant_chunk_ids=[chunk.pk]
        ) as retrieval:
            retrieval.attributes["similarities"] = [0.81]
        with tracer.span(
            "tool", "crm_lookup", input={"email": EMAIL}, output="Account found: active"
        ):
            pass
        with tracer.span("llm", "fake-model", model="fake-list-chat") as llm:
            llm.tokens_in, llm.tokens_out, llm.cost = 120, 30, Decimal("0.00018")
    result = records.TurnResult(
        status=Turn.Status.DONE,
        answer=f"Open the sign-in page and click **Forgot password** [1]. We wrote to {EMAIL}.",
        usage=Usage(input_tokens=120, output_tokens=30),
        cost=Decimal("0.00018"),
        ttft_ms=80.0,
        total_ms=420.0,
        route_reason="catalogue default",
        citations=[records.CitationRecord(chunk.pk, 1, 0.5, 0.81, True)],
    )
    records.turn_finish(turn_id=turn.pk, result=result, tracer=tracer)
    judges = {j.name: j for j in evaluation.judges_ensure()}
    for name in ("pii", "format"):
        evaluation.judge_run(turn_id=turn.pk, judge_id=judges[name].pk)
    return Turn.objects.get(pk=turn.pk)


def test_it_shows_the_waterfall_of_a_turn_with_tools_and_judges(
    client_as, alice, adam, django_assert_max_num_queries
) -> None:
    turn = traced_turn(alice)
    spans = Span.objects.filter(turn=turn)
    assert sorted(spans.values_list("kind", flat=True)) == [
        "agent", "judge", "judge", "llm", "retrieval", "tool",
    ]  # fmt: skip
    client = client_as(adam)

    with django_assert_max_num_queries(20):
        response = client.get(f"/dashboard/turns/{turn.pk}/")

    assert response.status_code == 200
    html = response.content.decode()
    # One bar per span, positioned and sized inside the 1000-unit timeline.
    bars = re.findall(r'<rect x="([\d.]+)" y="1" width="([\d.]+)"', html)
    assert len(bars) == 6
    assert all(0 <= float(x) <= 1000 and 0 < float(w) <= 1000 for x, w in bars)
    for text in ("hybrid_search", "crm_lookup", "fake-model", "judge pii v1", "judge format v1"):
        assert text in html
    assert "Judges (after the answer, in the background)" in html
    assert "Account found: active" in html, "the tool's output is shown"
    assert "Reset a password" in html or "doc-0" in html, "the retrieved chunk is named"
    # The default policy redacts personal data in everything the trace shows.
    assert EMAIL not in html
    assert "&lt;EMAIL_ADDRESS&gt;" in html
    scores = JudgeScore.objects.filter(turn=turn)
    assert scores.count() == 2
    assert "Judge scores" in html and "pii" in html


def test_it_shows_personal_data_to_admins_only_when_the_policy_says_so(
    client_as, alice, rita, adam, settings
) -> None:
    settings.TRACE_PII_POLICY = "admins"
    turn = traced_turn(alice)

    as_admin = client_as(adam).get(f"/dashboard/turns/{turn.pk}/").content.decode()
    as_reviewer = client_as(rita).get(f"/dashboard/turns/{turn.pk}/").content.decode()

    assert EMAIL in as_admin
    assert EMAIL not in as_reviewer and "&lt;EMAIL_ADDRESS&gt;" in as_reviewer


def test_it_shows_a_turn_without_spans_with_an_empty_state(client_as, alice, adam) -> None:
    conversation = services.conversation_create(owner=alice)
    turn = services.turn_create(conversation=conversation, user_text="still streaming")

    response = client_as(adam).get(f"/dashboard/turns/{turn.pk}/")

    assert response.status_code == 200
    assert "No spans were recorded for this turn yet" in response.content.decode()


def test_it_answers_404_for_a_missing_turn(client_as, adam) -> None:
    assert client_as(adam).get("/dashboard/turns/999999/").status_code == 404


@pytest.mark.parametrize("who", ["alice", "nora"])
def test_it_refuses_agents_and_nora_on_traces_and_search(client_as, cast, who) -> None:
    turn = traced_turn(cast["alice"])
    client = client_as(cast[who])

    for url in (f"/dashboard/turns/{turn.pk}/", "/dashboard/turns/"):
        response = client.get(url)
        assert response.status_code == 403
        assert EMAIL not in response.content.decode()


def test_it_lets_reviewers_read_traces_and_search(client_as, alice, rita) -> None:
    turn = traced_turn(alice)
    client = client_as(rita)

    assert client.get(f"/dashboard/turns/{turn.pk}/").status_code == 200
    assert client.get("/dashboard/turns/").status_code == 200
    page = client.get(f"/dashboard/turns/{turn.pk}/").content.decode()
    assert 'action="/dashboard/turns/' not in page, "reviewers cannot start a replay"
    nav = client.get("/dashboard/turns/").content.decode()
    assert 'href="/dashboard/"' in nav


def _ids(response) -> set[int]:
    return {
        int(i) for i in re.findall(r'href="/dashboard/turns/(\d+)/"', response.content.decode())
    }


def test_it_searches_turns_by_user_status_feedback_flag_and_judge_score(
    client_as, alice, rita, adam
) -> None:
    flagged = traced_turn(alice)  # the pii judge fails it: the answer holds an e-mail address
    ReviewItem.objects.create(turn=flagged)
    plain = traced_turn(rita, question="What is the VPN address?")
    Feedback.objects.create(turn=plain, user=rita, rating=Feedback.Rating.DOWN)
    failed = traced_turn(rita, question="Why is it slow?")
    Turn.objects.filter(pk=failed.pk).update(status=Turn.Status.FAILED)
    client = client_as(adam)

    assert _ids(client.get("/dashboard/turns/")) == {flagged.pk, plain.pk, failed.pk}
    assert _ids(client.get("/dashboard/turns/?user=alice")) == {flagged.pk}
    assert _ids(client.get("/dashboard/turns/?status=failed")) == {failed.pk}
    assert _ids(client.get("/dashboard/turns/?feedback=down")) == {plain.pk}
    assert _ids(client.get("/dashboard/turns/?feedback=none")) == {flagged.pk, failed.pk}
    assert _ids(client.get("/dashboard/turns/?flagged=yes")) == {flagged.pk}
    assert _ids(client.get("/dashboard/turns/?judge_below=0.5")) == {
        flagged.pk,
        plain.pk,
        failed.pk,
    }
    assert _ids(client.get("/dashboard/turns/?route=catalogue&status=done")) == {
        flagged.pk,
        plain.pk,
    }


def test_it_answers_bad_search_input_with_a_clear_400(client_as, adam) -> None:
    client = client_as(adam)

    response = client.get("/dashboard/turns/?judge_below=7&start=2026-05-02&end=2026-05-01")

    assert response.status_code == 400
    html = response.content.decode()
    assert "Ensure this value is less than or equal to 1" in html
    response = client.get("/dashboard/turns/?start=yesterday")
    assert response.status_code == 400
    assert "Enter a valid date" in response.content.decode()


def test_it_renders_the_trace_partial_for_any_page_that_includes_it(alice, rita) -> None:
    from django.template.loader import render_to_string
    from django.test import RequestFactory

    turn = traced_turn(alice)
    request = RequestFactory().get("/review/")
    request.user = rita

    with_spans = render_to_string(
        "dashboard/_trace.html", {"turn": turn, "spans": turn.spans.all()}, request=request
    )
    without = render_to_string("dashboard/_trace.html", {"turn": turn}, request=request)

    assert with_spans.count("<rect ") == without.count("<rect ") == 6


def test_it_hides_passages_of_collections_not_shared_with_the_viewer(client_as, adam, rita) -> None:
    turn = admins_only_turn(adam)

    as_reviewer = client_as(rita).get(f"/dashboard/turns/{turn.pk}/").content.decode()
    as_admin = client_as(adam).get(f"/dashboard/turns/{turn.pk}/").content.decode()

    assert "hybrid_search" in as_reviewer, "the retrieval step itself is still shown"
    assert "Project Bluebird" not in as_reviewer and "Lisbon" not in as_reviewer
    assert HIDDEN_PASSAGE in as_reviewer
    assert ADMINS_ONLY_PASSAGE in as_admin and HIDDEN_PASSAGE not in as_admin
