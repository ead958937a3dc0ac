"""Admins list, add, edit and switch the flag rules at /console/rules/; nobody else may."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chatbot.models import FlagRule, Judge
from tests.evaluation.review.support import rules

pytestmark = pytest.mark.django_db
ClientAs = Callable[[User], Client]


def _form(rule: FlagRule, **changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": rule.name, "kind": rule.kind, "priority": rule.priority,
        "judge_name": rule.judge_name, "sample_rate": rule.sample_rate,
    }  # fmt: skip
    if rule.double_review:
        data["double_review"] = "on"
    if rule.enabled:
        data["enabled"] = "on"
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


@pytest.mark.parametrize("who", ["alice", "rita", "nora"])
def test_it_refuses_everyone_but_admins(
    cast: dict[str, User], client_as: ClientAs, who: str
) -> None:
    rule = rules()[0]
    client = client_as(cast[who])
    for url in (
        reverse("console:rules"),
        reverse("console:rule_new"),
        reverse("console:rule_edit", args=[rule.pk]),
        reverse("console:rule_toggle", args=[rule.pk]),
    ):
        assert client.get(url).status_code in {403, 405}, url
        assert client.post(url, _form(rule, priority=1)).status_code == 403, url
    rule.refresh_from_db()
    assert rule.priority != 1 and rule.enabled


def test_it_lists_the_rules_with_a_console_tab(adam: User, client_as: ClientAs) -> None:
    rules()
    body = client_as(adam).get(reverse("console:rules")).content.decode()
    assert "Calibration sample" in body and "Thumbs down" in body
    assert 'aria-current="page">Review rules' in body


def test_it_edits_a_rule(adam: User, client_as: ClientAs) -> None:
    rule = FlagRule.objects.get(kind=FlagRule.Kind.RANDOM_SAMPLE, pk__in=[r.pk for r in rules()])
    response = client_as(adam).post(
        reverse("console:rule_edit", args=[rule.pk]), _form(rule, sample_rate="0.1", priority=30)
    )
    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.sample_rate, rule.priority, rule.double_review) == (0.1, 30, True)


def test_it_adds_a_rule_for_one_judge(adam: User, client_as: ClientAs) -> None:
    Judge.objects.create(name="pii", kind=Judge.Kind.PII)
    data = {"name": "PII leak", "kind": "judge_below", "priority": "95", "judge_name": "pii",
            "enabled": "on"}  # fmt: skip
    response = client_as(adam).post(reverse("console:rule_new"), data)
    assert response.status_code == 302
    assert FlagRule.objects.get(name="PII leak").judge_name == "pii"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sample_rate": "1.5"}, "less than or equal to 1"),
        ({"priority": "500"}, "less than or equal to 100"),
        ({"kind": "judge_below", "judge_name": "nosuchjudge"}, "There is no judge called"),
        ({"kind": "no_answer", "judge_name": "pii"}, "Only a “judge under threshold” rule"),
        ({"sample_rate": "0"}, "needs a sample rate above 0"),
    ],
)
def test_it_refuses_a_bad_rule_with_a_message(
    adam: User, client_as: ClientAs, changes: dict[str, object], message: str
) -> None:
    rule = FlagRule.objects.get(kind=FlagRule.Kind.RANDOM_SAMPLE, pk__in=[r.pk for r in rules()])
    response = client_as(adam).post(
        reverse("console:rule_edit", args=[rule.pk]),
        _form(rule, **{"sample_rate": "0.02", **changes}),
    )
    assert response.status_code == 400
    assert message in response.content.decode()


def test_it_switches_a_rule_off_and_on(adam: User, client_as: ClientAs) -> None:
    rule = rules()[0]
    client = client_as(adam)
    assert client.get(reverse("console:rule_toggle", args=[rule.pk])).status_code == 405
    client.post(reverse("console:rule_toggle", args=[rule.pk]))
    rule.refresh_from_db()
    assert not rule.enabled
    client.post(reverse("console:rule_toggle", args=[rule.pk]))
    rule.refresh_from_db()
    assert rule.enabled


def test_it_answers_404_for_a_missing_rule(adam: User, client_as: ClientAs) -> None:
    assert client_as(adam).get(reverse("console:rule_edit", args=[999_999])).status_code == 404
