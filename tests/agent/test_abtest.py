"""Online A/B tests on the turn's path: sticky assignment (same person, same variant, across a
weight change and a race on the first turn), the split following the weights, and a turn answered
with its variant's endpoint, prompt version and retrieval settings. Real Postgres; the models are
langchain-core's fake at the network edge."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import connection

from chatbot.agent.abtest import bucket_of, retrieval_errors, variant_for_turn
from chatbot.agent.cache import answer_cache_lookup
from chatbot.agent.tools.access import tools_ensure
from chatbot.agent.turn import turn_run
from chatbot.chat import services
from chatbot.console import services as console_services
from chatbot.models import (
    ABAssignment,
    ABTest,
    ABVariant,
    AssistantSettings,
    ModelEndpoint,
    PromptVersion,
    Span,
    ToolSetting,
    Turn,
)

pytestmark = pytest.mark.django_db(transaction=True)

CONTROL_SAYS = "Control answer."
CHALLENGER_SAYS = "Challenger answer."


def _running(*variants: dict[str, Any], name: str = "Models") -> ABTest:
    test = ABTest.objects.create(name=name, status=ABTest.Status.RUNNING)
    for position, fields in enumerate(variants):
        ABVariant.objects.create(test=test, position=position, **fields)
    return test


def _turn(user: User, text: str = "How long is the reset link valid?") -> Turn:
    conversation = services.conversation_create(owner=user)
    return services.turn_create(conversation=conversation, user_text=text)


def _user(number: int) -> User:
    return User.objects.create_user(f"abt-user-{number}", password="x")


async def _ask(user: User, **kwargs: Any) -> Turn:
    turn = await sync_to_async(_turn)(user)

    async def emit(piece: str) -> None:
        pass

    await turn_run(turn_id=turn.pk, emit=emit, **kwargs)
    return await Turn.objects.aget(pk=turn.pk)


@pytest.fixture
def endpoints(fake_endpoint: Callable[..., ModelEndpoint]) -> tuple[ModelEndpoint, ModelEndpoint]:
    control = fake_endpoint([CONTROL_SAYS], name="fake-control")
    challenger = fake_endpoint([CHALLENGER_SAYS], name="fake-challenger", default=False)
    return control, challenger


def test_the_same_person_keeps_their_variant_across_turns_and_a_weight_change(alice) -> None:
    test = _running({"name": "A", "is_control": True, "weight": 50}, {"name": "B", "weight": 50})
    first = variant_for_turn(turn_id=_turn(alice).pk)
    assert first is not None and first.test_id == test.pk
    assert ABAssignment.objects.get(test=test, user=alice).variant_id == first.variant_id

    seen = {variant_for_turn(turn_id=_turn(alice).pk).variant_id for _ in range(5)}  # type: ignore[union-attr]
    # Every weight moved to the other variant: people already assigned stay where they were.
    ABVariant.objects.filter(test=test, pk=first.variant_id).update(weight=0)
    ABVariant.objects.filter(test=test).exclude(pk=first.variant_id).update(weight=100)
    after = variant_for_turn(turn_id=_turn(alice).pk)

    assert seen == {first.variant_id}
    assert after is not None and after.variant_id == first.variant_id
    assert ABAssignment.objects.filter(test=test, user=alice).count() == 1


def test_the_split_over_many_people_follows_the_weights(db) -> None:
    weights = [20, 30, 50]
    counts = Counter(bucket_of(test_id=7, user_id=pk, weights=weights) for pk in range(1, 3001))
    shares = [counts[i] / 3000 for i in range(3)]
    assert all(abs(share - w / 100) < 0.04 for share, w in zip(shares, weights, strict=True))
    # Deterministic: the same person and test always land in the same place.
    assert bucket_of(test_id=7, user_id=42, weights=weights) == bucket_of(
        test_id=7, user_id=42, weights=weights
    )

    test = _running({"name": "A", "is_control": True, "weight": 20}, {"name": "B", "weight": 80})
    people = [_user(n) for n in range(60)]
    for person in people:
        variant_for_turn(turn_id=_turn(person).pk)
    assigned = Counter(
        ABAssignment.objects.filter(test=test).values_list("variant__name", flat=True)
    )
    expected = Counter(
        "AB"[bucket_of(test_id=test.pk, user_id=p.pk, weights=[20, 80])] for p in people
    )
    assert assigned == expected, "the stored assignment is the hash's choice"


def test_two_first_turns_at_once_give_one_assignment(alice) -> None:
    test = _running({"name": "A", "is_control": True, "weight": 50}, {"name": "B", "weight": 50})
    turns = [_turn(alice).pk for _ in range(6)]
    barrier = threading.Barrier(len(turns))
    chosen: list[int] = []
    errors: list[BaseException] = []

    def first_turn(turn_id: int) -> None:
        try:
            barrier.wait()
            applied = variant_for_turn(turn_id=turn_id)
            assert applied is not None
            chosen.append(applied.variant_id)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=first_turn, args=(pk,)) for pk in turns]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(set(chosen)) == 1 and len(chosen) == len(turns)
    assert ABAssignment.objects.filter(test=test, user=alice).count() == 1


async def test_a_turn_is_answered_and_recorded_with_its_variant(alice, endpoints) -> None:
    challenger = endpoints[1]

    def setup() -> tuple[ABVariant, PromptVersion]:
        console_services.prompt_versions_ensure()
        draft = console_services.prompt_draft_create(user=None)
        console_services.prompt_draft_save(
            version=draft, text="You are the challenger's assistant.", note=""
        )
        # Everyone lands in the challenger (100%); the control keeps production.
        test = _running(
            {"name": "Control", "is_control": True, "weight": 0},
            {"name": "Challenger", "weight": 100, "endpoint": challenger, "prompt_version": draft},
        )
        return test.variants.get(name="Challenger"), draft

    variant, draft = await sync_to_async(setup)()

    turn = await _ask(alice)

    assert turn.ab_variant_id == variant.pk
    assert turn.answer == CHALLENGER_SAYS and turn.endpoint_id == challenger.pk
    assert turn.prompt_version_id == draft.pk
    root = await Span.objects.aget(turn=turn, parent__isnull=True)
    assert root.attributes["ab_variant"] == "Challenger"
    assert root.attributes["ab_variant_id"] == variant.pk
    assert root.attributes["ab_test"] == "Models"
    llm = await Span.objects.aget(turn=turn, kind=Span.Kind.LLM)
    assert llm.name == "fake-challenger"


async def test_the_control_answers_as_production(alice, endpoints) -> None:
    control, challenger = endpoints
    test = await sync_to_async(_running)(
        {"name": "Control", "is_control": True, "weight": 100},
        {"name": "Challenger", "weight": 0, "endpoint": challenger},
    )
    turn = await _ask(alice)
    assert turn.answer == CONTROL_SAYS and turn.endpoint_id == control.pk
    assert turn.ab_variant_id == (await test.variants.aget(name="Control")).pk


async def test_retrieval_overrides_reach_grounding(alice, endpoints) -> None:
    # Saved settings: grounding off (the test default); the variant turns it on with k = 3.
    await sync_to_async(_running)(
        {"name": "Control", "is_control": True, "weight": 0},
        {
            "name": "Grounded",
            "weight": 100,
            "retrieval": {"grounding": "required", "retrieval_k": 3, "min_similarity": 0.42},
        },
    )
    turn = await _ask(alice)
    retrieval = await Span.objects.aget(turn=turn, kind=Span.Kind.RETRIEVAL)
    assert retrieval.attributes["k"] == 3
    assert retrieval.attributes["min_similarity"] == 0.42
    root = await Span.objects.aget(turn=turn, parent__isnull=True)
    assert root.attributes["ab_variant"] == "Grounded"


async def test_callers_naming_a_model_or_replays_take_no_part(alice, endpoints) -> None:
    control, challenger = endpoints
    test = await sync_to_async(_running)(
        {"name": "Control", "is_control": True, "weight": 0},
        {"name": "Challenger", "weight": 100, "endpoint": challenger},
    )

    named = await _ask(alice, requested_model="fake-control")

    def replay_turn() -> Turn:
        conversation = services.conversation_create(owner=alice, is_replay=True)
        return services.turn_create(
            conversation=conversation,
            user_text="How long is the reset link valid?",
            replay_of=named,
        )

    replay = await sync_to_async(replay_turn)()

    async def emit(piece: str) -> None:
        pass

    await turn_run(turn_id=replay.pk, emit=emit, replay=True)
    replay = await Turn.objects.aget(pk=replay.pk)

    assert named.ab_variant_id is None and named.endpoint_id == control.pk
    assert replay.is_replay and replay.ab_variant_id is None
    assert replay.endpoint_id == control.pk
    assert not await ABAssignment.objects.filter(test=test).aexists()


async def test_no_running_test_leaves_the_turn_alone(alice, endpoints) -> None:
    control, challenger = endpoints
    await sync_to_async(_running)(
        {"name": "Control", "is_control": True, "weight": 0},
        {"name": "Challenger", "weight": 100, "endpoint": challenger},
    )
    await ABTest.objects.aupdate(status=ABTest.Status.STOPPED)
    turn = await _ask(alice)
    assert turn.ab_variant_id is None and turn.endpoint_id == control.pk


def test_retrieval_overrides_are_checked_against_the_allow_list() -> None:
    assert retrieval_errors({"retrieval_k": 8, "min_similarity": 0.3, "grounding": "off"}) == []
    problems = retrieval_errors(
        {"retrieval_k": 0, "min_coverage": 1.5, "grounding": "sometimes", "max_steps": 3}
    )
    assert len(problems) == 4
    assert any("max_steps" in p for p in problems)
    assert retrieval_errors(["retrieval_k"]) != []


def test_a_variant_looks_up_the_answer_cache_in_its_own_scope(alice, endpoints) -> None:
    AssistantSettings.objects.update_or_create(pk=1, defaults={"cache_enabled": True})
    _running(
        {"name": "Control", "is_control": True, "weight": 0},
        {"name": "k9", "weight": 100, "retrieval": {"retrieval_k": 9}},
    )
    turn = _turn(alice)
    applied = variant_for_turn(turn_id=turn.pk)
    assert applied is not None and applied.config is not None

    plain = answer_cache_lookup(turn_id=turn.pk, requested_model=None)
    varied = answer_cache_lookup(
        turn_id=turn.pk,
        requested_model=applied.requested_model,
        prompt=applied.prompt,
        config=applied.config,
    )
    other_model = answer_cache_lookup(turn_id=turn.pk, requested_model="fake-challenger")

    scopes = {x.attributes["cache_scope"] for x in (plain, varied, other_model)}
    assert len(scopes) == 3, "a variant never finds another variant's answers"
    assert varied.config.retrieval_k == 9
    assert AssistantSettings.objects.get(pk=1).retrieval_k != 9, "the saved row is untouched"


def test_the_hot_path_costs_one_query(alice, endpoints, django_assert_num_queries) -> None:
    challenger = endpoints[1]
    turn = _turn(alice)
    with django_assert_num_queries(1):  # one small statement, compiled once per process
        assert variant_for_turn(turn_id=turn.pk) is None  # no test runs
    _running(
        {"name": "Control", "is_control": True, "weight": 0},
        {"name": "Challenger", "weight": 100, "endpoint": challenger},
    )
    variant_for_turn(turn_id=turn.pk)  # the first turn assigns
    second = _turn(alice)
    with django_assert_num_queries(2):  # is a test running? then the variant, in one statement
        applied = variant_for_turn(turn_id=second.pk)
    assert applied is not None and applied.requested_model == "fake-challenger"


async def test_the_agent_answers_with_the_variants_model_and_prompt(alice, fake_endpoint) -> None:
    refund = {
        "template": "refund_reply",
        "fields": {"name": "Maria", "amount": "20 EUR", "days": "5"},
    }

    def setup() -> tuple[ModelEndpoint, PromptVersion, ABVariant]:
        tools_ensure()
        ToolSetting.objects.filter(name="draft").update(enabled=True, roles=["agent"])
        fake_endpoint(["From the default model."], tool_calling=ModelEndpoint.ToolCalling.NATIVE)
        challenger = fake_endpoint(
            ["From the challenger [1]."],
            name="agent-challenger",
            default=False,
            tool_calling=ModelEndpoint.ToolCalling.NATIVE,
        )
        challenger.options["tool_calls"] = [[{"name": "draft", "args": refund}]]
        challenger.save()
        console_services.prompt_versions_ensure()
        draft = console_services.prompt_draft_create(user=None)
        console_services.prompt_draft_save(version=draft, text="You draft replies.", note="")
        test = _running(
            {"name": "Control", "is_control": True, "weight": 0},
            {"name": "Agent", "weight": 100, "endpoint": challenger, "prompt_version": draft},
        )
        return challenger, draft, test.variants.get(name="Agent")

    challenger, draft, variant = await sync_to_async(setup)()

    turn = await _ask(alice)

    assert turn.answer == "From the challenger [1]."
    assert (turn.endpoint_id, turn.prompt_version_id) == (challenger.pk, draft.pk)
    assert turn.ab_variant_id == variant.pk
    root = await Span.objects.aget(turn=turn, parent__isnull=True)
    assert root.attributes["agent"] == "answer" and root.attributes["ab_variant"] == "Agent"
    assert await Span.objects.filter(turn=turn, kind=Span.Kind.TOOL, name="draft").aexists()
