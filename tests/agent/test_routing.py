"""The routing rules in real turns: sensitivity (personal data, confidential collections), task,
difficulty, budget caps and availability (retries, fallbacks), against real Postgres and Redis.
The models are langchain-core's fake chat model and fake HTTP peers speaking OpenAI's wire format;
a disallowed endpoint is a peer, so "never reaches it" means its server saw no request."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group, User
from django.utils import timezone

from chatbot.accounts import roles
from chatbot.agent.tools import ToolContext
from chatbot.agent.tools.access import tools_ensure
from chatbot.agent.tools.extract import Extract
from chatbot.agent.turn import _prepare, turn_run
from chatbot.chat import services
from chatbot.models import (
    AssistantSettings,
    ModelEndpoint,
    RoutingRule,
    Span,
    ToolSetting,
    Turn,
)
from chatbot.telemetry.tracing import Tracer
from tests.fake_peers import fake_peer, sse
from tests.knowledge.test_search import make_knowledge_base

pytestmark = pytest.mark.django_db(transaction=True)

PII_QUESTION = "Jane (jane.doe@example.com) cannot log in. How long is the reset link valid?"
PLAIN_QUESTION = "How long is the reset link valid for a customer who asked for it?"
PASSWORD_QUESTION = "How do I reset a forgotten password?"


# --- fake HTTP peers ----------------------------------------------------------------------------


def _answering(text: str) -> Callable[[str, dict[str, Any]], tuple[int, list[bytes], str]]:
    """An OpenAI-compatible server streaming `text` word by word, with its token counts."""

    def handler(path: str, body: dict[str, Any]) -> tuple[int, list[bytes], str]:
        def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> dict:
            choices = (
                [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
            )
            head = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
            return {**head, "choices": choices, **extra}

        words = [w + " " for w in text.split(" ")]
        words[-1] = words[-1].rstrip()
        usage = {"prompt_tokens": 40, "completion_tokens": len(words), "total_tokens": 0}
        events: list[tuple[str | None, dict[str, Any] | str]] = [
            (None, chunk({"role": "assistant", "content": ""})),
            *((None, chunk({"content": w})) for w in words),
            (None, chunk({}, "stop")),
            (None, chunk(None, usage=usage)),
            (None, "[DONE]"),
        ]
        return 200, sse(events), "text/event-stream"

    return handler


def _failing(path: str, body: dict[str, Any]) -> tuple[int, list[bytes], str]:
    error = b'{"error": {"message": "upstream exploded", "type": "server_error"}}'
    return 500, [error], "application/json"


def _slow(path: str, body: dict[str, Any]) -> tuple[int, list[bytes], str]:
    time.sleep(5)  # far longer than the availability rule's first-token timeout
    return _answering("Too late.")(path, body)


def _peer_model(name: str, url: str, *, default: bool = False, **fields: Any) -> ModelEndpoint:
    if default:
        ModelEndpoint.objects.filter(is_default=True).update(is_default=False)
    return ModelEndpoint.objects.create(
        name=name,
        provider=ModelEndpoint.Provider.OPENAI,
        base_url=f"{url}/v1",
        model_id=f"{name}-model",
        style=ModelEndpoint.Style.CHAT,
        is_default=default,
        region=fields.pop("region", "us"),
        price_input_per_mtok=fields.pop("price_input_per_mtok", 3),
        price_output_per_mtok=fields.pop("price_output_per_mtok", 15),
        **fields,
    )


@pytest.fixture
def cloud() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A hosted model outside the company: the endpoint sensitive data must never reach."""
    with fake_peer(_answering("From the cloud.")) as peer:
        yield peer


def _rule(kind: str, endpoints: list[ModelEndpoint], order: int = 1, **options: Any) -> None:
    RoutingRule.objects.create(
        name=f"{kind} rule",
        kind=kind,
        order=order,
        reason={
            "sensitivity": "Sensitive data stays on local models",
            "task": "Small local model for small tasks",
            "difficulty": "Hard questions to the strongest model",
            "budget": "Daily budget",
            "availability": "Fall back when a model fails",
        }[kind],
        options=options,
        endpoint_ids=[e.pk for e in endpoints],
    )


async def _ask(user: User, text: str, **kwargs: Any) -> tuple[Any, str]:
    conversation = await sync_to_async(services.conversation_create)(owner=user)
    turn = await sync_to_async(services.turn_create)(conversation=conversation, user_text=text)
    pieces: list[str] = []

    async def emit(piece: str) -> None:
        pieces.append(piece)

    outcome = await turn_run(turn_id=turn.pk, emit=emit, **kwargs)
    return outcome, "".join(pieces)


def _spans(turn_id: int) -> list[Span]:
    return list(Span.objects.filter(turn_id=turn_id).order_by("started_at"))


# --- no rules: as before ------------------------------------------------------------------------


async def test_it_answers_on_the_default_route_when_no_rule_is_on(alice, fake_endpoint) -> None:
    local = await sync_to_async(fake_endpoint)(["From local."], name="local-small", default=False)
    await sync_to_async(fake_endpoint)(["From the default."], name="big")
    await sync_to_async(_rule)("sensitivity", [local])
    await RoutingRule.objects.all().aupdate(enabled=False)

    outcome, answer = await _ask(alice, PII_QUESTION)

    assert answer == "From the default."
    turn = await Turn.objects.aget(pk=outcome.turn_id)
    assert turn.route_reason == "catalogue default"
    spans = await sync_to_async(_spans)(outcome.turn_id)
    assert [s.kind for s in spans] == ["agent", "llm"], "no route span without rules"


# --- sensitivity ----------------------------------------------------------------------------------


async def test_it_never_sends_a_personal_data_question_to_a_disallowed_endpoint(
    alice, fake_endpoint, cloud
) -> None:
    url, seen = cloud
    local = await sync_to_async(fake_endpoint)(["From local."], name="local-small", default=False)
    await sync_to_async(_peer_model)("cloud-big", url, default=True)
    await sync_to_async(_rule)("sensitivity", [local])

    outcome, answer = await _ask(alice, PII_QUESTION)

    assert seen == [], "the cloud model never saw the question"
    assert answer == "From local."
    turn = await Turn.objects.aget(pk=outcome.turn_id)
    assert turn.endpoint_id == local.pk
    assert turn.route_reason == "Sensitive data stays on local models"
    spans = await sync_to_async(_spans)(outcome.turn_id)
    assert [(s.kind, s.name) for s in spans] == [
        ("agent", "turn"),
        ("agent", "route"),
        ("llm", "local-small"),
    ]
    route = spans[1]
    [verdict] = route.attributes["rules"]
    assert verdict["outcome"] == "limited" and "EMAIL_ADDRESS" in verdict["detail"]
    assert verdict["reason"] == "Sensitive data stays on local models"
    assert "jane.doe" not in json.dumps(route.attributes), "the trace names the type, not the data"

    # The same rule lets a question without personal data go to the default.
    outcome, answer = await _ask(alice, PLAIN_QUESTION)
    assert answer == "From the cloud." and len(seen) == 1


async def test_it_refuses_a_named_model_that_may_not_receive_the_personal_data(
    alice, fake_endpoint, cloud
) -> None:
    url, seen = cloud
    local = await sync_to_async(fake_endpoint)(["From local."], name="local-small", default=True)
    await sync_to_async(_peer_model)("cloud-big", url)
    await sync_to_async(_rule)("sensitivity", [local])

    outcome, answer = await _ask(alice, PII_QUESTION, requested_model="cloud-big")

    assert seen == [] and answer == ""
    assert outcome.status == "failed"
    assert outcome.error.startswith("The model 'cloud-big' may not receive this (personal data")
    spans = await sync_to_async(_spans)(outcome.turn_id)
    route = next(s for s in spans if s.name == "route")
    assert route.error == outcome.error and route.attributes["rules"][0]["outcome"] == "limited"


def test_it_keeps_a_confidential_collections_passages_from_a_disallowed_endpoint(
    cast, alice, fake_endpoint, cloud
) -> None:
    url, seen = cloud
    kb = make_knowledge_base()
    AssistantSettings.objects.update_or_create(
        pk=1, defaults={"grounding": "required", "min_similarity": 0.3}
    )
    local = fake_endpoint(["From local [1]."], name="local-small", default=False)
    _peer_model("cloud-big", url, default=True)
    _rule("sensitivity", [local], personal_data=False, confidential=True)

    prepared = _prepare(_turn(alice, PASSWORD_QUESTION).pk, None, None, Tracer())
    assert prepared.route is not None and prepared.route.endpoint.name == "cloud-big"

    kb.help.confidential = True
    kb.help.save()
    tracer = Tracer()
    prepared = _prepare(_turn(alice, PASSWORD_QUESTION).pk, None, None, tracer)
    assert prepared.grounding.hits and prepared.grounding.hits[0].collection_id == kb.help.pk
    assert prepared.route is not None and prepared.route.endpoint.name == "local-small"
    route = next(r for r in tracer.records if r.name == "route")
    assert "confidential passages (Help centre)" in route.attributes["rules"][0]["detail"]
    assert seen == []


def _turn(user: User, text: str) -> Turn:
    conversation = services.conversation_create(owner=user)
    return services.turn_create(conversation=conversation, user_text=text)


def _agent_setup(fake_endpoint) -> tuple[ModelEndpoint, ModelEndpoint]:
    """The agent loop on: kb_search and draft for agents, a knowledge base with its help centre
    confidential, a cloud default that searches first and a local model that answers."""
    kb = make_knowledge_base()
    kb.help.confidential = True
    kb.help.save()
    AssistantSettings.objects.update_or_create(
        pk=1, defaults={"grounding": "required", "min_similarity": 0.3}
    )
    tools_ensure()
    ToolSetting.objects.filter(name__in=["kb_search", "draft"]).update(
        enabled=True, roles=["agent"]
    )
    search = json.dumps({"step": "kb_search", "arguments": {"query": PASSWORD_QUESTION}})
    answer = json.dumps({"step": "answer"})
    cloud = fake_endpoint(["From the cloud."], name="cloud-big", default=True)
    cloud.options["choices"] = [search, answer]
    cloud.save()
    local = fake_endpoint(["From local [1]."], name="local-small", default=False)
    local.options["choices"] = [answer]
    local.save()
    _rule("sensitivity", [local], personal_data=False, confidential=True)
    return cloud, local


async def test_it_routes_each_agent_step_by_what_it_would_send(alice, fake_endpoint) -> None:
    _, local = await sync_to_async(_agent_setup)(fake_endpoint)

    outcome, answer = await _ask(alice, PASSWORD_QUESTION)

    assert answer == "From local [1]."
    spans = await sync_to_async(_spans)(outcome.turn_id)
    steps = [(s.kind, s.name, s.attributes.get("endpoint")) for s in spans if s.kind != "retrieval"]
    assert steps == [
        ("agent", "turn", "local-small"),
        # Step 1 sends only the question: the default may choose.
        ("agent", "route", "cloud-big"),
        ("agent", "choose", "cloud-big"),
        ("tool", "kb_search", None),
        # The search brought confidential passages: from here on, only the local model.
        ("agent", "route", "local-small"),
        ("agent", "choose", "local-small"),
        # The answer's own route came out the same: no second span saying so.
        ("llm", "local-small", None),
    ]
    turn = await Turn.objects.aget(pk=outcome.turn_id)
    assert turn.endpoint_id == local.pk
    # Each choice costs what its own model charges.
    chooses = [s for s in spans if s.name == "choose"]
    llm = next(s for s in spans if s.kind == "llm")
    assert turn.cost == sum(s.cost for s in chooses) + llm.cost


# --- task and difficulty --------------------------------------------------------------------------


def test_it_sends_an_extraction_to_the_small_model(alice, fake_endpoint, cloud) -> None:
    url, seen = cloud
    _peer_model("cloud-big", url, default=True)
    local = fake_endpoint(["unused"], name="local-small", default=False)
    fields = {
        "customer_name": "Maria Lopez",
        "email": "maria@example.com",
        "product": "export",
        "sentiment": "negative",
        "wants_refund": True,
        "summary": "The export fails; she wants a refund.",
    }
    local.options["choices"] = [json.dumps(fields)]
    local.save()
    _rule("task", [local], tasks=["extract"])
    text = "Hi, Maria Lopez (maria@example.com) here: the export fails, I want a refund."
    tracer = Tracer()
    context = ToolContext(user=alice, options=Extract.default_options, timeout_s=30, tracer=tracer)

    result = Extract().run({"schema": "contact_request", "text": text}, context)

    assert result.data["fields"] == fields
    assert seen == []
    route, llm = tracer.records
    assert route.name == "route" and route.attributes["task"] == "extract"
    assert route.attributes["rules"][0]["outcome"] == "chose"
    assert llm.kind == "llm" and llm.name == "local-small"


async def test_it_sends_short_questions_to_the_small_model_and_hard_ones_to_the_strongest(
    alice, fake_endpoint
) -> None:
    def catalogue() -> ModelEndpoint:
        small = fake_endpoint(
            ["Small."], name="local-small", default=False, price_output_per_mtok=0
        )
        fake_endpoint(["Mid."], name="mid", price_output_per_mtok=2)
        fake_endpoint(["Big."], name="big", default=False, price_output_per_mtok=30)
        _rule("task", [small], order=1, tasks=["short_answer"], short_words=8)
        _rule("difficulty", [], order=2, min_words=40, min_parts=2)  # none listed: the priciest
        return small

    await sync_to_async(catalogue)()

    assert (await _ask(alice, "How long is the reset link valid?"))[1] == "Small."
    assert (await _ask(alice, PLAIN_QUESTION))[1] == "Mid."
    hard = "Why did the March invoice double? And who can refund the difference to the customer?"
    outcome, answer = await _ask(alice, hard)
    assert answer == "Big."
    turn = await Turn.objects.aget(pk=outcome.turn_id)
    assert turn.route_reason == "Hard questions to the strongest model"
    route = next(s for s in await sync_to_async(_spans)(outcome.turn_id) if s.name == "route")
    assert [v["outcome"] for v in route.attributes["rules"]] == ["no match", "chose"]
    assert "2 parts" in route.attributes["rules"][1]["detail"]


# --- budget ---------------------------------------------------------------------------------------


def _spent_today(owner: User, tokens: int, cost: str, *, days_ago: int = 0) -> None:
    turn = _turn(owner, "earlier")
    Turn.objects.filter(pk=turn.pk).update(
        status=Turn.Status.DONE,
        tokens_in=tokens // 2,
        tokens_out=tokens - tokens // 2,
        cost=Decimal(cost),
        created_at=timezone.now() - timedelta(days=days_ago),
    )


def _budget_setup(fake_endpoint, cheaper: bool) -> None:
    small = fake_endpoint(["Small."], name="local-small", default=False)
    fake_endpoint(["Big."], name="big")
    ann = User.objects.create_user("ann")
    ann.groups.add(Group.objects.get(name=roles.AGENT))
    _spent_today(ann, 990, "0.10")  # another agent: the cap is the group's
    _spent_today(ann, 50_000, "9.00", days_ago=1)  # yesterday's spending does not count
    _rule("budget", [small] if cheaper else [], group="agent", max_tokens=1000, max_cost=0)


async def test_it_switches_to_a_cheaper_model_when_the_group_is_over_its_daily_cap(
    alice, rita, fake_endpoint
) -> None:
    await sync_to_async(_budget_setup)(fake_endpoint, True)

    # 990 of 1,000 tokens: under the cap, and this answer takes the group over it.
    assert (await _ask(alice, PLAIN_QUESTION))[1] == "Big."
    outcome, answer = await _ask(alice, PLAIN_QUESTION)
    assert answer == "Small."
    route = next(s for s in await sync_to_async(_spans)(outcome.turn_id) if s.name == "route")
    [verdict] = route.attributes["rules"]
    assert verdict["outcome"] == "switched" and "of 1,000 tokens" in verdict["detail"]
    assert (await _ask(rita, PLAIN_QUESTION))[1] == "Big.", "reviewers have no cap"


async def test_it_refuses_in_words_over_the_cap_when_nothing_cheaper_is_named(
    alice, fake_endpoint
) -> None:
    await sync_to_async(_budget_setup)(fake_endpoint, False)
    await sync_to_async(_spent_today)(alice, 110, "0.01")

    outcome, answer = await _ask(alice, PLAIN_QUESTION)

    assert outcome.status == "failed" and answer == ""
    assert outcome.error.startswith(
        "Your team's daily budget for the assistant is used up (1,100 of 1,000 tokens today)."
    )
    turn = await Turn.objects.aget(pk=outcome.turn_id)
    assert turn.error == outcome.error and turn.endpoint_id is None


# --- availability ---------------------------------------------------------------------------------


async def test_it_falls_back_past_an_erroring_then_a_timing_out_endpoint(
    alice, fake_endpoint
) -> None:
    with fake_peer(_failing) as (broken_url, broken_seen), fake_peer(_slow) as (slow_url, _):
        local = await sync_to_async(fake_endpoint)(["From local."], name="local", default=False)
        await sync_to_async(_peer_model)("broken", broken_url, default=True)
        slow = await sync_to_async(_peer_model)("slow", slow_url)
        await sync_to_async(_rule)(
            # A second: a loaded machine's error reply from "broken" still comes well within it.
            "availability",
            [slow, local],
            retries=1,
            backoff_s=0.05,
            first_token_timeout_s=1.0,
        )

        outcome, answer = await _ask(alice, PLAIN_QUESTION)

    assert outcome.status == "done" and answer == "From local."
    assert len(broken_seen) == 2, "tried, then retried once after the backoff"
    spans = await sync_to_async(_spans)(outcome.turn_id)
    attempts = [s for s in spans if s.kind == "llm"]
    assert [(s.name, s.attributes["attempt"], s.attributes["retry"]) for s in attempts] == [
        ("broken", 1, 0),
        ("broken", 2, 1),
        ("slow", 3, 0),
        ("slow", 4, 1),
        ("local", 5, 0),
    ]
    assert all("upstream exploded" in s.error or "500" in s.error for s in attempts[:2])
    assert all("within 1 s" in s.error for s in attempts[2:4])
    assert attempts[1].attributes["backoff_s"] == 0.05 and not attempts[4].error
    turn = await Turn.objects.aget(pk=outcome.turn_id)
    assert turn.endpoint_id == local.pk
    assert turn.route_reason.endswith("fell back to local (broken failed)")
    assert turn.tokens_out == attempts[4].tokens_out > 0


async def test_a_step_choice_falls_back_past_a_failing_model(alice, fake_endpoint) -> None:
    """The agent's choices are steps of the turn like the answer: the availability rule's
    fallbacks take over when the chosen model errors, each attempt a span."""
    refund = {"template": "refund_reply", "fields": {"name": "Maria", "amount": "20", "days": "5"}}
    with fake_peer(_failing) as (broken_url, broken_seen):
        local = await sync_to_async(fake_endpoint)(
            ["Here is the draft [1]."],
            name="local",
            default=False,
            tool_calling=ModelEndpoint.ToolCalling.NATIVE,
        )
        local.options["tool_calls"] = [[{"name": "draft", "args": refund}]]
        await sync_to_async(local.save)()
        await sync_to_async(_peer_model)(
            "broken", broken_url, default=True, tool_calling=ModelEndpoint.ToolCalling.NATIVE
        )
        await sync_to_async(_rule)("availability", [local], retries=0, backoff_s=0.01)
        await sync_to_async(tools_ensure)()
        await ToolSetting.objects.filter(name="draft").aupdate(enabled=True, roles=["agent"])

        outcome, answer = await _ask(alice, "Draft a refund reply to Maria for 20 EUR.")

    assert outcome.status == "done" and answer == "Here is the draft [1]."
    spans = await sync_to_async(_spans)(outcome.turn_id)
    chooses = [s for s in spans if s.name == "choose"]
    assert [(c.attributes["endpoint"], c.attributes["attempt"]) for c in chooses] == [
        ("broken", 1),
        ("local", 2),
        ("broken", 1),
        ("local", 2),
    ]
    assert all("500" in c.error or "exploded" in c.error for c in chooses[::2])
    assert chooses[1].attributes["action"] == "draft" and not chooses[1].error
    assert chooses[3].attributes["action"] == "answer"
    assert len(broken_seen) == 3, "two choices and the answer each tried it first"
    turn = await Turn.objects.aget(pk=outcome.turn_id)
    assert turn.endpoint_id == local.pk


async def test_it_does_not_fall_back_once_text_has_streamed(alice, fake_endpoint) -> None:
    backup = await sync_to_async(fake_endpoint)(["Backup."], name="backup", default=False)
    await sync_to_async(fake_endpoint)(["abcdefgh"], error_on_chunk=3)
    await sync_to_async(_rule)("availability", [backup], retries=1, backoff_s=0.01)

    outcome, answer = await _ask(alice, PLAIN_QUESTION)

    assert outcome.status == "failed" and answer == "abc"
    llm = [s for s in await sync_to_async(_spans)(outcome.turn_id) if s.kind == "llm"]
    assert [s.name for s in llm] == ["fake-model"], "the person saw text: no second beginning"


def test_it_reads_the_rules_with_the_catalogue_before_the_model_call(
    alice, fake_endpoint, django_assert_num_queries
) -> None:
    """Rules add no query to the time-to-first-token path unless a budget or confidential rule
    needs one: prompt, assistant settings, catalogue with the rules."""
    local = fake_endpoint(name="local-small", default=False)
    fake_endpoint()
    _rule("sensitivity", [local], order=1, confidential=False)
    _rule("task", [local], order=2)
    turn = _turn(alice, PII_QUESTION)
    with django_assert_num_queries(3):
        prepared = _prepare(turn.pk, None, None, Tracer())
    assert prepared.route is not None and prepared.route.endpoint.name == "local-small"
