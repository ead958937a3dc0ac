"""Residency: the regions a collection, the asker's groups or an API key allow are where their data
goes, and nowhere else; when no enabled model runs there the turn is refused in words. The
disallowed endpoint is a fake HTTP peer, so "never goes there" means its server saw no request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group, User
from django.test import Client

from chatbot.accounts import roles
from chatbot.accounts.services import api_key_create
from chatbot.agent.turn import _prepare, turn_run
from chatbot.chat import services
from chatbot.llm.routing import RouteRefused, RuleSpec, StepFacts, route_plan
from chatbot.llm.routing_options import DEFAULT_OPTIONS
from chatbot.llm.types import EndpointConfig
from chatbot.models import AssistantSettings, GroupPolicy, ModelEndpoint, Span, Turn
from chatbot.telemetry.tracing import Tracer
from tests.api.conftest import bearer
from tests.fake_peers import fake_peer, sse
from tests.knowledge.test_search import make_knowledge_base

PASSWORD_QUESTION = "How do I reset a forgotten password?"


# --- the rule on its own (no database) ----------------------------------------------------------


def _endpoint(pk: int, name: str, region: str) -> EndpointConfig:
    return EndpointConfig(
        id=pk,
        name=name,
        provider="fake",
        base_url="",
        model_id=name,
        api_key_name="",
        style="chat",
        prompt_template="",
        price_input_per_mtok=Decimal(1),
        price_output_per_mtok=Decimal(1),
        context_window=8192,
        max_output_tokens=256,
        temperature=0.0,
        region=region,
    )


US, EU, US2 = (
    _endpoint(1, "us-big", "us"),
    _endpoint(2, "eu-small", "eu"),
    _endpoint(3, "us2", "us"),
)


def _route(catalogue: tuple[EndpointConfig, ...], rules: list[RuleSpec] = (), **facts: Any):  # type: ignore[assignment]
    return route_plan(rules=rules, endpoints=catalogue, default_id=1, facts=StepFacts(**facts))


def test_a_collection_limited_to_eu_never_goes_to_a_us_model() -> None:
    limit = (("collection “HR”", ("eu",)),)
    route = _route((US, EU), residency=limit)
    assert route.endpoint == EU
    assert route.reason == "Data stays in its allowed regions"
    [verdict] = route.verdicts
    assert verdict["kind"] == "residency" and "only eu-small" in verdict["detail"]

    with pytest.raises(RouteRefused) as refused:
        _route((US, US2), residency=limit)
    assert refused.value.user_message.startswith(
        "Your data must stay in eu (collection “HR” allows eu); no enabled model runs there."
    )


def test_a_named_model_outside_the_regions_is_refused_not_swapped() -> None:
    with pytest.raises(RouteRefused) as refused:
        _route((US, EU), residency=(("group “EU staff”", ("eu",)),), requested="us-big")
    assert "The model 'us-big' may not receive this" in refused.value.user_message
    assert "data must stay in eu" in refused.value.user_message


def test_regions_that_do_not_overlap_refuse_in_words() -> None:
    limits = (("group “EU staff”", ("eu",)), ("API key “ci”", ("us",)))
    with pytest.raises(RouteRefused) as refused:
        _route((US, EU), residency=limits)
    message = refused.value.user_message
    assert "do not overlap" in message and "group “EU staff” allows eu" in message
    assert "API key “ci” allows us" in message


def test_fallbacks_never_leave_the_allowed_regions() -> None:
    eu2 = _endpoint(4, "eu-tertiary", "eu")
    options = {**DEFAULT_OPTIONS["availability"], "retries": 0}
    availability = RuleSpec(9, "availability", "availability", "stay up", options, (3, 1, 4))
    route = _route((US, EU, US2, eu2), [availability], residency=(("group “g”", ("eu",)),))
    assert route.endpoint == EU
    assert route.fallbacks == (eu2,), "the us fallbacks are left out"


# --- real turns ---------------------------------------------------------------------------------


def _answering(text: str) -> Any:
    def handler(path: str, body: dict[str, Any]) -> tuple[int, list[bytes], str]:
        head = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
        delta = {"index": 0, "delta": {"content": text}, "finish_reason": None}
        events: list[tuple[str | None, dict[str, Any] | str]] = [
            (None, {**head, "choices": [delta]}),
            (None, {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
            (None, "[DONE]"),
        ]
        return 200, sse(events), "text/event-stream"

    return handler


@pytest.fixture
def us_peer() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with fake_peer(_answering("From the US.")) as peer:
        yield peer


def _us_default(url: str) -> ModelEndpoint:
    ModelEndpoint.objects.filter(is_default=True).update(is_default=False)
    return ModelEndpoint.objects.create(
        name="us-cloud",
        provider=ModelEndpoint.Provider.OPENAI,
        base_url=f"{url}/v1",
        model_id="m",
        is_default=True,
        region="us",
    )


def _turn(user: User, text: str) -> Turn:
    conversation = services.conversation_create(owner=user)
    return services.turn_create(conversation=conversation, user_text=text)


@pytest.mark.django_db(transaction=True)
def test_a_collections_passages_stay_in_its_region_or_the_turn_is_refused(
    cast, alice, fake_endpoint, us_peer
) -> None:
    url, seen = us_peer
    kb = make_knowledge_base()
    AssistantSettings.objects.update_or_create(
        pk=1, defaults={"grounding": "required", "min_similarity": 0.3}
    )
    _us_default(url)
    kb.help.allowed_regions = ["eu"]
    kb.help.save()

    # No model runs in eu: refused, in words, and the us model saw nothing.
    outcome = _run(alice, PASSWORD_QUESTION)
    assert outcome.status == Turn.Status.FAILED
    assert outcome.error.startswith(
        "Your data must stay in eu (collection “Help centre” allows eu)"
    )
    assert seen == []
    route = Span.objects.get(turn_id=outcome.turn_id, name="route")
    assert route.attributes["rules"][0]["kind"] == "residency"

    fake_endpoint(["From the EU [1]."], name="eu-small", default=False, region="eu")
    tracer = Tracer()
    prepared = _prepare(_turn(alice, PASSWORD_QUESTION).pk, None, None, tracer)
    assert prepared.grounding.hits[0].collection_id == kb.help.pk
    assert prepared.route is not None and prepared.route.endpoint.name == "eu-small"
    assert seen == []


def _run(user: User, text: str) -> Any:
    from asgiref.sync import async_to_sync

    turn = _turn(user, text)

    async def emit(piece: str) -> None:
        return None

    return async_to_sync(turn_run)(turn_id=turn.pk, emit=emit)


@pytest.mark.django_db(transaction=True)
async def test_a_groups_regions_limit_its_members_turns(
    cast, alice, rita, fake_endpoint, us_peer
) -> None:
    url, seen = us_peer
    await sync_to_async(_us_default)(url)
    await sync_to_async(fake_endpoint)(
        ["From the EU."], name="eu-small", default=False, region="eu"
    )
    agents = await Group.objects.aget(name=roles.AGENT)
    await GroupPolicy.objects.acreate(group=agents, allowed_regions=["eu"])

    async def emit(piece: str) -> None:
        return None

    turn = await sync_to_async(_turn)(alice, "Where is the printer?")
    outcome = await turn_run(turn_id=turn.pk, emit=emit)
    assert outcome.answer == "From the EU." and seen == []

    # Someone outside the group is not limited.
    turn = await sync_to_async(_turn)(rita, "Where is the printer?")
    outcome = await turn_run(turn_id=turn.pk, emit=emit)
    assert outcome.answer == "From the US." and len(seen) == 1


@pytest.mark.django_db(transaction=True)
def test_an_api_keys_regions_limit_what_its_requests_send(
    cast, alice, fake_endpoint, us_peer
) -> None:
    url, seen = us_peer
    _us_default(url)
    fake_endpoint(["From the EU."], name="eu-small", default=False, region="eu")
    limited = api_key_create(user=alice, name="eu only")
    limited.key.allowed_regions = ["eu"]
    limited.key.save()
    free = api_key_create(user=alice, name="anywhere").plaintext

    def ask(key: str) -> dict[str, Any]:
        conversation = services.conversation_create(owner=alice)
        response = Client().post(
            f"/api/conversations/{conversation.pk}/messages",
            data=json.dumps({"message": "Where is the printer?"}),
            content_type="application/json",
            headers=bearer(key),
        )
        assert response.status_code == 200, response.content
        return dict(response.json())

    assert "From the EU." in json.dumps(ask(limited.plaintext))
    assert seen == []
    assert "From the US." in json.dumps(ask(free))
    assert len(seen) == 1
