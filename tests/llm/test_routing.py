"""The routing rules' evaluation on its own: a pure function of the rules, the catalogue and the
facts of one step (no database, no model)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from chatbot.llm.routing import (
    GroupUsage,
    RouteRefused,
    RuleSpec,
    StepFacts,
    question_parts,
    route_plan,
)
from chatbot.llm.routing_options import DEFAULT_OPTIONS, options_problems
from chatbot.llm.types import EndpointConfig, NoModelAvailable


def _endpoint(pk: int, name: str, price: str) -> EndpointConfig:
    return EndpointConfig(
        id=pk,
        name=name,
        provider="fake",
        base_url="",
        model_id=name,
        api_key_name="",
        style="chat",
        prompt_template="",
        price_input_per_mtok=Decimal(price),
        price_output_per_mtok=Decimal(price),
        context_window=8192,
        max_output_tokens=256,
        temperature=0.0,
        region="local" if price == "0" else "eu",
    )


LOCAL, MID, BIG = _endpoint(1, "local", "0"), _endpoint(2, "mid", "1"), _endpoint(3, "big", "15")
CATALOGUE = (LOCAL, MID, BIG)


def _rule(pk: int, kind: str, ids: tuple[int, ...] = (), **options: Any) -> RuleSpec:
    merged = {**DEFAULT_OPTIONS[kind], **options}
    return RuleSpec(pk, f"{kind} {pk}", kind, f"reason of {kind} {pk}", merged, ids)


def _route(rules: list[RuleSpec], default: int = 2, **facts: Any):
    return route_plan(
        rules=rules, endpoints=CATALOGUE, default_id=default, facts=StepFacts(**facts)
    )


def test_it_is_the_plain_choice_without_rules() -> None:
    route = _route([], question="Anything?")
    assert route.endpoint == MID and route.reason == "catalogue default" and not route.verdicts
    assert _route([], requested="big").reason == "requested by the caller"
    with pytest.raises(NoModelAvailable):
        _route([], requested="gone")


def test_it_keeps_personal_data_on_allowed_models_whatever_the_rule_order() -> None:
    # The difficulty rule picks the strongest model first; the sensitivity rule listed after it
    # still wins, and the step goes to the model it allows.
    rules = [_rule(1, "difficulty", (3,)), _rule(2, "sensitivity", (1,))]
    route = _route(rules, question="a? b?", personal_data=("EMAIL_ADDRESS",))
    assert route.endpoint == LOCAL
    assert [v["outcome"] for v in route.verdicts] == ["chose", "limited"]
    assert "EMAIL_ADDRESS" in route.verdicts[1]["detail"]
    assert route.reason == "reason of difficulty 1; reason of sensitivity 2"
    without = _route(rules, question="a? b?")
    assert without.endpoint == BIG


def test_it_refuses_when_no_allowed_model_exists_or_the_caller_named_another() -> None:
    rules = [_rule(1, "sensitivity", ())]
    with pytest.raises(RouteRefused) as refused:
        _route(rules, confidential=("Payroll",))
    assert refused.value.user_message.startswith("No model that may receive this question's data")
    rules = [_rule(1, "sensitivity", (1,))]
    with pytest.raises(RouteRefused) as refused:
        _route(rules, requested="big", personal_data=("PHONE_NUMBER",))
    assert refused.value.user_message.startswith("The model 'big' may not receive this")
    assert refused.value.verdicts[0]["outcome"] == "limited"
    assert _route(rules, requested="local", personal_data=("PHONE_NUMBER",)).endpoint == LOCAL


def test_it_counts_only_the_personal_data_a_rule_names() -> None:
    rules = [_rule(1, "sensitivity", (1,), entities=["US_SSN"])]
    assert _route(rules, personal_data=("EMAIL_ADDRESS",)).endpoint == MID
    assert _route(rules, personal_data=("US_SSN",)).endpoint == LOCAL


def test_it_sends_tool_steps_and_short_answers_to_the_small_model() -> None:
    rules = [_rule(1, "task", (1,))]
    assert _route(rules, task="extract", question="x " * 300).endpoint == LOCAL
    assert _route(rules, task="classify").endpoint == LOCAL
    assert _route(rules, task="answer", question="How long is the link valid?").endpoint == LOCAL
    long = "How do I move a workspace to another region and keep its users and their history?"
    assert _route(rules, task="answer", question=long).endpoint == MID
    assert _route(rules, task="choose", question="Short?").endpoint == MID
    # A caller who named a model keeps it.
    assert _route(rules, task="extract", requested="big").endpoint == BIG


def test_it_sends_hard_questions_to_the_strongest_allowed_model() -> None:
    rules = [_rule(1, "difficulty", ())]
    parts = "What changed in billing?\nAnd who approved it?"
    assert question_parts(parts) == 2
    assert _route(rules, question=parts).endpoint == BIG
    assert _route(rules, question="1. export fails\n2. refund wanted\n").endpoint == BIG
    assert _route(rules, question="word " * 60).endpoint == BIG
    assert _route(rules, question="Reset link?", top_similarity=0.31).endpoint == BIG
    assert _route(rules, question="Reset link?", top_similarity=0.8).endpoint == MID
    # "Strongest allowed": the priciest model the sensitivity rules leave.
    limited = [_rule(2, "sensitivity", (1, 2)), *rules]
    assert _route(limited, question=parts, personal_data=("IBAN_CODE",)).endpoint == MID


def test_it_lets_the_first_matching_rule_pick() -> None:
    rules = [_rule(1, "task", (1,)), _rule(2, "difficulty", (3,))]
    route = _route(rules, task="answer", question="What? Why?")
    assert route.endpoint == BIG, "two parts: not a short answer, so the difficulty rule picks"
    route = _route(rules, task="answer", question="Reset link?", top_similarity=0.2)
    assert route.endpoint == LOCAL, "a short answer: the task rule, listed first, picks"
    assert route.verdicts[1]["outcome"] == "already chosen"


def test_it_switches_or_refuses_over_a_groups_daily_cap() -> None:
    usage = {"agent": GroupUsage(tokens=1200, cost=Decimal("0.40"))}
    cheaper = [_rule(1, "difficulty", (3,)), _rule(2, "budget", (1,), max_tokens=1000)]
    route = _route(cheaper, question="a? b?", groups=("agent",), usage=usage)
    assert route.endpoint == LOCAL
    assert "1,200 of 1,000 tokens" in route.verdicts[1]["detail"]
    under = [_rule(2, "budget", (1,), max_tokens=5000, max_cost="1.00")]
    assert _route(under, groups=("agent",), usage=usage).endpoint == MID
    assert _route(cheaper[1:], groups=("reviewer",), usage=usage).endpoint == MID
    refuse = [_rule(3, "budget", (), max_tokens=0, max_cost="0.25")]
    with pytest.raises(RouteRefused) as refused:
        _route(refuse, groups=("agent",), usage=usage)
    assert "daily budget for the assistant is used up (0.40 of 0.25" in refused.value.user_message
    with pytest.raises(RouteRefused):
        _route(cheaper[1:], groups=("agent",), usage=usage, requested="big")


def test_it_plans_retries_and_allowed_fallbacks() -> None:
    rules = [
        _rule(1, "sensitivity", (1, 2)),
        _rule(2, "availability", (3, 1, 2), retries=2, backoff_s=0.1),
    ]
    route = _route(rules, personal_data=("EMAIL_ADDRESS",))
    assert route.endpoint == MID and route.fallbacks == (LOCAL,), "big may not receive it"
    assert (route.retries, route.backoff_s) == (2, 0.1)
    assert _route(rules).fallbacks == (BIG, LOCAL)
    assert _route(rules, requested="mid").fallbacks == (), "a named model is never swapped"


def test_it_explains_bad_settings_in_words() -> None:
    assert options_problems("task", DEFAULT_OPTIONS["task"], 1) == []
    assert options_problems("task", {"tasks": ["poetry"]}, 0) == [
        '"tasks" must list some of: classify, extract, short_answer.',
        "Choose the small model(s) these steps go to.",
    ]
    assert options_problems("budget", {"group": "", "max_tokens": 0, "max_cost": "lots"}, 0) == [
        'Name the group (role) the cap applies to, e.g. "group": "agent".',
        '"max_cost" must be an amount such as "5.00" (0 or null: no cap).',
        'Set "max_tokens", "max_cost" or both.',
    ]
    assert options_problems("availability", {"retries": 9, "colour": 1}, 0) == [
        'Unknown setting "colour" for a availability rule.',
        '"retries" must be between 0 and 3.',
    ]
