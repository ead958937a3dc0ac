"""The agent's step loop with the fake chat model at the network edge: native tool calls and
structured choices, refusals, invalid arguments, asking back and handing over."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from chatbot.agent.loop import StepEvent
from chatbot.agent.tools.access import tools_allowed, tools_ensure
from chatbot.agent.turn import turn_run
from chatbot.chat import services
from chatbot.models import AssistantSettings, Escalation, ModelEndpoint, Span, ToolSetting, Turn

pytestmark = pytest.mark.django_db(transaction=True)

REFUND = {"template": "refund_reply", "fields": {"name": "Maria", "amount": "20 EUR", "days": "5"}}


def _tools(**roles: list[str]) -> None:
    tools_ensure()
    for name, allowed in roles.items():
        ToolSetting.objects.filter(name=name).update(enabled=True, roles=allowed)


async def _ask(user, text: str = "Draft a refund reply to Maria for 20 EUR."):
    conversation = await sync_to_async(services.conversation_create)(owner=user)
    turn = await sync_to_async(services.turn_create)(conversation=conversation, user_text=text)
    pieces: list[str] = []
    events: list[StepEvent] = []

    async def emit(text: str) -> None:
        pieces.append(text)

    async def on_step(event: StepEvent) -> None:
        events.append(event)

    outcome = await turn_run(turn_id=turn.pk, emit=emit, on_step=on_step)
    return outcome, "".join(pieces), events


def _spans(turn_id: int) -> list[Span]:
    return list(Span.objects.filter(turn_id=turn_id).order_by("started_at"))


def _native(fake_endpoint, calls: list[list[dict[str, Any]]], answer: str) -> ModelEndpoint:
    endpoint = fake_endpoint([answer], tool_calling=ModelEndpoint.ToolCalling.NATIVE)
    endpoint.options["tool_calls"] = calls
    endpoint.save()
    return endpoint


async def test_it_calls_a_tool_natively_and_cites_its_result(alice, fake_endpoint) -> None:
    await sync_to_async(_tools)(draft=["agent"])
    await sync_to_async(_native)(
        fake_endpoint, [[{"name": "draft", "args": REFUND}]], "Here is the draft [1]."
    )

    outcome, answer, events = await _ask(alice)

    assert outcome.status == "done"
    assert answer == "Here is the draft [1]."
    assert [(e.tool, e.status) for e in events] == [("draft", "running"), ("draft", "done")]
    assert "Maria" in events[-1].data["draft"] and "20 EUR" in events[-1].data["draft"]
    spans = await sync_to_async(_spans)(outcome.turn_id)
    kinds = [(s.kind, s.name) for s in spans]
    assert kinds == [
        ("agent", "turn"),
        ("agent", "choose"),
        ("tool", "draft"),
        ("agent", "choose"),
        ("llm", "fake-model"),
    ]
    tool = spans[2]
    assert tool.attributes["arguments"] == REFUND
    assert tool.attributes["status"] == "done"
    assert tool.attributes["number"] == 1 and tool.attributes["cited"] is True
    assert not tool.error
    assert spans[0].attributes["agent"] == "answer"


async def test_it_chooses_by_filling_the_schema(alice, fake_endpoint) -> None:
    await sync_to_async(_tools)(draft=["agent"])
    endpoint = await sync_to_async(fake_endpoint)(["Done: see the draft [1]."])
    endpoint.options["choices"] = [
        json.dumps({"step": "draft", "arguments": REFUND}),
        json.dumps({"step": "answer"}),
    ]
    await sync_to_async(endpoint.save)()

    outcome, answer, events = await _ask(alice)

    assert answer == "Done: see the draft [1]."
    assert [e.status for e in events] == ["running", "done"]
    spans = await sync_to_async(_spans)(outcome.turn_id)
    chooses = [s for s in spans if s.name == "choose"]
    assert [c.attributes["action"] for c in chooses] == ["draft", "answer"]
    assert all(c.attributes["way"] == "structured" for c in chooses)
    assert all(c.tokens_in > 0 and c.tokens_out > 0 and c.cost > 0 for c in chooses)
    turn = await Turn.objects.aget(pk=outcome.turn_id)
    assert turn.tokens_in == sum(s.tokens_in for s in spans)


async def test_it_retries_invalid_output_once_then_answers_as_before(alice, fake_endpoint) -> None:
    await sync_to_async(_tools)(draft=["agent"])
    endpoint = await sync_to_async(fake_endpoint)(["A plain answer."])
    endpoint.options["choices"] = ["not json at all"]
    await sync_to_async(endpoint.save)()

    outcome, answer, events = await _ask(alice)

    assert outcome.status == "done" and answer == "A plain answer."
    assert events == []
    spans = await sync_to_async(_spans)(outcome.turn_id)
    choose = next(s for s in spans if s.name == "choose")
    assert choose.attributes["attempts"] == 2
    assert choose.attributes["problem"] == "the model's step was not valid JSON"
    assert spans[0].attributes["agent"] == "plain"


async def test_it_refuses_a_tool_the_person_may_not_use_and_goes_on(alice, fake_endpoint) -> None:
    await sync_to_async(_tools)(draft=["admin"], classify=["agent"])
    await sync_to_async(_native)(
        fake_endpoint, [[{"name": "draft", "args": REFUND}]], "I could not draft it."
    )

    outcome, answer, events = await _ask(alice)

    assert outcome.status == "done" and answer == "I could not draft it."
    assert [(e.tool, e.status) for e in events] == [("draft", "refused")]
    assert "not available to you" in events[0].summary
    tool = next(s for s in await sync_to_async(_spans)(outcome.turn_id) if s.kind == "tool")
    assert tool.attributes["status"] == "refused" and "not available" in tool.error


async def test_it_shows_invalid_arguments_in_words_and_goes_on(alice, fake_endpoint) -> None:
    await sync_to_async(_tools)(draft=["agent"])
    await sync_to_async(_native)(
        fake_endpoint,
        [
            [{"name": "draft", "args": {"template": 5, "fields": {}}}],
            [{"name": "draft", "args": REFUND}],
        ],
        "Second time lucky [1].",
    )

    _, answer, events = await _ask(alice)

    assert [(e.status) for e in events] == ["failed", "running", "done"]
    assert (
        "were not valid" in events[0].summary and "5 is not of type 'string'" in events[0].summary
    )
    assert answer == "Second time lucky [1]."


async def test_it_stops_after_the_step_limit_and_answers(alice, fake_endpoint) -> None:
    await sync_to_async(_tools)(draft=["agent"])
    await sync_to_async(AssistantSettings.objects.update_or_create)(
        pk=1, defaults={"grounding": "off", "max_steps": 2}
    )
    await sync_to_async(_native)(
        fake_endpoint, [[{"name": "draft", "args": REFUND}]] * 5, "Enough steps [1]."
    )

    outcome, answer, events = await _ask(alice)

    assert answer == "Enough steps [1]."
    assert [e.status for e in events].count("done") == 2
    spans = await sync_to_async(_spans)(outcome.turn_id)
    assert [s.name for s in spans if s.kind == "agent"] == ["turn", "choose", "choose"]


async def test_it_asks_back_when_the_model_chooses_to(alice, fake_endpoint) -> None:
    await sync_to_async(_tools)(draft=["agent"])
    await sync_to_async(_native)(
        fake_endpoint,
        [[{"name": "ask_user", "args": {"question": "Which customer is this for?"}}]],
        "unused",
    )

    outcome, answer, _ = await _ask(alice, "Draft a refund reply.")

    assert outcome.status == "done" and answer == "Which customer is this for?"


async def test_it_hands_over_to_the_escalation_inbox(alice, fake_endpoint) -> None:
    await sync_to_async(_tools)(draft=["agent"])
    await sync_to_async(_native)(
        fake_endpoint,
        [[{"name": "hand_over", "args": {"reason": "the customer wants a manager"}}]],
        "unused",
    )

    outcome, answer, _ = await _ask(alice, "The customer insists on a manager.")

    assert "handed this to a colleague" in answer and "wants a manager" in answer
    escalation = await Escalation.objects.select_related("requested_by").aget(
        turn_id=outcome.turn_id
    )
    assert escalation.status == Escalation.Status.OPEN
    assert escalation.requested_by == alice
    assert escalation.reason == "The assistant handed over: the customer wants a manager"
    turn = await Turn.objects.aget(pk=outcome.turn_id)
    assert turn.status == Turn.Status.DONE


MONGOLIA = "What is the capital of Mongolia?"
NO_ROWS = "SELECT * FROM tickets WHERE product = 'Mongolia'"


async def test_it_does_not_answer_from_a_query_that_found_nothing(
    alice, fake_endpoint, reporting_db: str
) -> None:
    """The SQL step runs and finds no rows; nothing else was gathered. The answer the model would
    have made up is never written: the plain pipeline grounds the question and, with nothing in
    the knowledge base, says it couldn't find it."""
    await sync_to_async(_tools)(sql=["agent"])
    await sync_to_async(AssistantSettings.objects.update_or_create)(
        pk=1, defaults={"grounding": "required"}
    )
    await sync_to_async(_native)(
        fake_endpoint,
        [[{"name": "sql", "args": {"query": NO_ROWS}}]],
        "The capital of Mongolia is $10,000,000.",
    )

    outcome, answer, events = await _ask(alice, MONGOLIA)

    config = await AssistantSettings.objects.aget(pk=1)
    assert outcome.status == "done"
    assert answer == config.no_answer_message and "10,000,000" not in answer
    assert [(e.tool, e.status, e.summary) for e in events] == [
        ("sql", "running", ""),
        ("sql", "done", "no rows"),
    ]
    turn = await Turn.objects.aget(pk=outcome.turn_id)
    assert turn.no_answer and turn.answer == config.no_answer_message
    spans = await sync_to_async(_spans)(outcome.turn_id)
    assert spans[0].attributes["agent"] == "plain"
    # No model wrote the answer, but one chose the step: the turn's tokens are its, and the
    # dashboard's "by model" counts them there, not under "no model".
    chooses = [s for s in spans if s.name == "choose"]
    assert turn.tokens_in == sum(c.tokens_in for c in chooses) > 0
    endpoint = await ModelEndpoint.objects.aget(name=chooses[0].attributes["endpoint"])
    assert turn.endpoint_id == endpoint.pk
    tool = next(s for s in spans if s.kind == "tool")
    assert tool.attributes["status"] == "done" and "cited" not in tool.attributes


async def test_it_gives_an_empty_result_to_the_model_beside_one_that_found_rows(
    alice, fake_endpoint, reporting_db: str
) -> None:
    await sync_to_async(_tools)(sql=["agent"])
    await sync_to_async(_native)(
        fake_endpoint,
        [
            [{"name": "sql", "args": {"query": NO_ROWS}}],
            [{"name": "sql", "args": {"query": "SELECT count(*) FROM tickets"}}],
        ],
        "There are tickets [2], none for Mongolia [1].",
    )

    outcome, answer, events = await _ask(alice, "How many tickets are there, and for Mongolia?")

    assert answer == "There are tickets [2], none for Mongolia [1]."
    assert next(e.summary for e in events if e.status == "done") == "no rows"
    spans = await sync_to_async(_spans)(outcome.turn_id)
    assert spans[0].attributes["agent"] == "answer"
    assert [s.attributes["number"] for s in spans if s.kind == "tool"] == [1, 2]


def test_it_gives_nora_and_a_disabled_tool_nothing(alice, nora) -> None:
    _tools(draft=["agent"], classify=["agent"])
    ToolSetting.objects.filter(name="classify").update(enabled=False)
    assert set(tools_allowed(alice)) == {"kb_search", "draft"}
    assert tools_allowed(nora) == {}


async def test_it_keeps_the_plain_pipeline_without_tools(alice, fake_endpoint) -> None:
    await sync_to_async(tools_ensure)()
    await sync_to_async(fake_endpoint)(["Just an answer."])

    outcome, answer, events = await _ask(alice)

    spans = await sync_to_async(_spans)(outcome.turn_id)
    assert answer == "Just an answer." and events == []
    assert [s.kind for s in spans] == ["agent", "llm"]


async def test_it_lists_the_tool_calls_in_the_api_read(alice, fake_endpoint, client_as) -> None:
    await sync_to_async(_tools)(draft=["agent"])
    await sync_to_async(_native)(
        fake_endpoint, [[{"name": "draft", "args": REFUND}]], "Here is the draft [1]."
    )
    outcome, _, _ = await _ask(alice)
    turn = await Turn.objects.aget(pk=outcome.turn_id)

    client = await sync_to_async(client_as)(alice)
    body = (await sync_to_async(client.get)(f"/api/conversations/{turn.conversation_id}")).json()

    (call,) = body["turns"][0]["tool_calls"]
    assert call["tool"] == "draft" and call["status"] == "done" and call["number"] == 1
    assert call["arguments"] == REFUND and "Maria" in call["data"]["draft"]
