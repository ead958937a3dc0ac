"""The routing page of the admin console: the ordered rules (add, edit, switch, move, delete),
confidential collections, and the dry run that routes a question as a chosen person without
calling any model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chatbot.models import Collection, ModelEndpoint, RoutingRule, Span, Turn
from tests.fake_peers import fake_peer

pytestmark = pytest.mark.django_db

ClientAs = Callable[[User], Client]


def _catalogue(fake_endpoint: Callable[..., ModelEndpoint]) -> tuple[ModelEndpoint, ModelEndpoint]:
    local = fake_endpoint(name="local-small", default=False, price_output_per_mtok=0)
    big = fake_endpoint(name="big", price_output_per_mtok=30)
    return local, big


def _form(**fields: Any) -> dict[str, Any]:
    return {
        "name": "Personal data stays local",
        "kind": "sensitivity",
        "reason": "Personal data stays on our servers",
        "enabled": "on",
        "models": "local-small",
        "options": "{}",
        **fields,
    }


@pytest.mark.parametrize("who", ["nora", "alice", "rita"])
def test_it_refuses_everyone_but_admins(
    client_as: ClientAs, cast: dict[str, User], who: str, fake_endpoint
) -> None:
    _catalogue(fake_endpoint)
    rule = RoutingRule.objects.create(name="r", kind="task", reason="why", order=1)
    collection = Collection.objects.create(name="Payroll")
    client = client_as(cast[who])

    assert client.get(reverse("console:routing")).status_code == 403
    assert client.get(reverse("console:routing_rule_new")).status_code == 403
    assert client.get(reverse("console:routing_rule_edit", args=[rule.pk])).status_code == 403
    dry_run = reverse("console:routing_dry_run")
    assert client.get(dry_run, {"user": str(cast[who].pk), "question": "Hi?"}).status_code == 403
    assert client.post(reverse("console:routing_rule_new"), _form()).status_code == 403
    for name in ("routing_rule_toggle", "routing_rule_move", "routing_rule_delete"):
        response = client.post(reverse(f"console:{name}", args=[rule.pk]), {"direction": "up"})
        assert response.status_code == 403
    confidential = reverse("console:collection_confidential", args=[collection.pk])
    assert client.post(confidential).status_code == 403
    assert list(RoutingRule.objects.values_list("name", "enabled")) == [("r", True)]
    assert not Collection.objects.get(pk=collection.pk).confidential


def test_it_shows_what_to_do_when_there_are_no_rules(client_as: ClientAs, adam: User) -> None:
    page = client_as(adam).get(reverse("console:routing"))

    assert page.status_code == 200
    body = page.content.decode()
    assert "No routing rules yet" in body and "Try a question" in body
    assert 'aria-current="page">Routing</a>' in body


def test_it_adds_rules_at_the_end_with_their_models_in_order(
    client_as: ClientAs, adam: User, fake_endpoint
) -> None:
    local, big = _catalogue(fake_endpoint)
    client = client_as(adam)

    response = client.post(reverse("console:routing_rule_new"), _form())
    assert response.status_code == 302 and response["Location"] == reverse("console:routing")
    fallback = _form(
        name="Fall back",
        kind="availability",
        reason="When a model fails",
        models="big, local-small",
        options='{"retries": 2}',
    )
    assert client.post(reverse("console:routing_rule_new"), fallback).status_code == 302

    first, second = RoutingRule.objects.order_by("order")
    assert (first.name, first.order, first.endpoint_ids) == (
        "Personal data stays local",
        1,
        [local.pk],
    )
    assert first.options == {"personal_data": True, "confidential": True}, "defaults filled in"
    assert (second.order, second.endpoint_ids) == (2, [big.pk, local.pk])
    assert second.options == {"retries": 2, "backoff_s": 0.2, "first_token_timeout_s": 0}
    body = client.get(reverse("console:routing")).content.decode()
    assert body.index("Personal data stays local") < body.index("Fall back")
    assert '<code class="small">big</code> → <code class="small">local-small</code>' in body
    assert "Personal data stays on our servers" in body


def test_it_explains_unknown_models_and_bad_settings(
    client_as: ClientAs, adam: User, fake_endpoint
) -> None:
    _catalogue(fake_endpoint)
    client = client_as(adam)

    response = client.post(
        reverse("console:routing_rule_new"),
        _form(kind="task", models="gpt-9", options='{"tasks": ["poetry"]}'),
    )

    assert response.status_code == 400
    body = response.content.decode()
    assert "No model named gpt-9 in the catalogue. Models: big, local-small." in body
    assert "&quot;tasks&quot; must list some of: classify, extract, short_answer." in body
    response = client.post(reverse("console:routing_rule_new"), _form(options="[1, 2]"))
    assert "Settings must be a JSON object" in response.content.decode()
    assert not RoutingRule.objects.exists()


def test_it_edits_switches_and_deletes_a_rule(
    client_as: ClientAs, adam: User, fake_endpoint
) -> None:
    local, _ = _catalogue(fake_endpoint)
    rule = RoutingRule.objects.create(
        name="Cap", kind="budget", reason="Daily budget", order=1, endpoint_ids=[local.pk]
    )
    client = client_as(adam)
    edit = reverse("console:routing_rule_edit", args=[rule.pk])

    page = client.get(edit).content.decode()
    assert 'value="local-small"' in page
    budget = '{"group": "agent", "max_tokens": 500, "max_cost": 0}'
    response = client.post(edit, _form(name="Cap", kind="budget", models="", options=budget))
    assert response.status_code == 302
    rule.refresh_from_db()
    assert rule.endpoint_ids == [] and rule.options["max_tokens"] == 500

    client.post(reverse("console:routing_rule_toggle", args=[rule.pk]))
    rule.refresh_from_db()
    assert not rule.enabled
    client.post(reverse("console:routing_rule_delete", args=[rule.pk]))
    assert not RoutingRule.objects.exists()
    assert client.get(edit).status_code == 404


def test_it_moves_rules_up_and_down(client_as: ClientAs, adam: User) -> None:
    for order, name in enumerate(["a", "b", "c"], start=1):
        RoutingRule.objects.create(name=name, kind="task", reason=name, order=order * 10)
    client = client_as(adam)

    def move(name: str, direction: str) -> None:
        rule = RoutingRule.objects.get(name=name)
        url = reverse("console:routing_rule_move", args=[rule.pk])
        assert client.post(url, {"direction": direction}).status_code == 302

    move("c", "up")
    assert list(RoutingRule.objects.values_list("name", flat=True)) == ["a", "c", "b"]
    move("a", "down")
    assert list(RoutingRule.objects.values_list("name", "order")) == [
        ("c", 1),
        ("a", 2),
        ("b", 3),
    ]
    move("c", "up")  # already first: nothing moves, the admin is told
    assert list(RoutingRule.objects.values_list("name", flat=True)) == ["c", "a", "b"]


def test_it_marks_a_collection_confidential(client_as: ClientAs, adam: User) -> None:
    collection = Collection.objects.create(name="Payroll")
    client = client_as(adam)

    client.post(reverse("console:collection_confidential", args=[collection.pk]))

    assert Collection.objects.get(pk=collection.pk).confidential
    assert "Confidential</span>" in client.get(reverse("console:routing")).content.decode()


def test_it_dry_runs_a_question_as_a_chosen_person_without_calling_a_model(
    client_as: ClientAs, adam: User, alice: User, fake_endpoint
) -> None:
    local = fake_endpoint(name="local-small", default=False, price_output_per_mtok=0)
    with fake_peer(lambda path, body: (500, [b"{}"], "application/json")) as (url, seen):
        ModelEndpoint.objects.filter(is_default=True).update(is_default=False)
        ModelEndpoint.objects.create(
            name="cloud-big",
            provider="openai",
            base_url=f"{url}/v1",
            model_id="m",
            is_default=True,
            price_output_per_mtok=30,
        )
        RoutingRule.objects.create(
            name="Personal data stays local",
            kind="sensitivity",
            reason="Personal data stays on our servers",
            order=1,
            options={"personal_data": True, "confidential": True},
            endpoint_ids=[local.pk],
        )
        RoutingRule.objects.create(
            name="Cap for agents",
            kind="budget",
            reason="Daily budget",
            order=2,
            options={"group": "agent", "max_tokens": 100_000},
        )
        question = "Customer +1 415 555 0100 (tom@example.com) wants a refund. What now?"
        page = client_as(adam).get(
            reverse("console:routing_dry_run"), {"user": str(alice.pk), "question": question}
        )

    assert page.status_code == 200
    body = page.content.decode()
    assert "Goes to <strong>local-small</strong> — Personal data stays on our servers." in body
    assert "EMAIL_ADDRESS" in body and "PHONE_NUMBER" in body
    assert "only local-small may receive it" in body
    assert "under the cap" in body and "agent: 0 tokens" in body
    assert seen == [] and not Turn.objects.exists() and not Span.objects.exists()


def test_it_shows_a_refusal_and_asks_for_a_question(
    client_as: ClientAs, adam: User, alice: User, fake_endpoint
) -> None:
    _catalogue(fake_endpoint)
    RoutingRule.objects.create(
        name="Nothing leaves", kind="sensitivity", reason="Nothing leaves", order=1
    )
    client = client_as(adam)
    dry_run = reverse("console:routing_dry_run")

    page = client.get(
        dry_run, {"user": str(alice.pk), "question": "Mail ann@example.com the invoice"}
    )
    body = page.content.decode()
    assert "<strong>Refused.</strong>" in body and "No model that may receive this" in body
    assert client.get(dry_run).status_code == 200
    empty = client.get(dry_run, {"user": str(alice.pk), "question": ""})
    assert empty.status_code == 400 and "This field is required." in empty.content.decode()
