"""Personal data and residency as admins set them (PII patterns, the regions of collections, groups
and API keys, the catalogue's flag) and as people see them (the note on a redacted answer)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from chatbot.accounts import roles
from chatbot.agent import records
from chatbot.chat import services
from chatbot.compliance.pii import patterns_load, pii_find
from chatbot.compliance.redact import Placeholders
from chatbot.llm.types import Usage
from chatbot.models import (
    ApiKey,
    AuditEntry,
    Collection,
    GroupPolicy,
    ModelEndpoint,
    PiiPattern,
)
from chatbot.telemetry.tracing import Tracer

pytestmark = pytest.mark.django_db

ClientAs = Callable[[User], Client]


def _actions() -> list[str]:
    return list(AuditEntry.objects.order_by("pk").values_list("action", flat=True))


@pytest.mark.parametrize("who", ["nora", "alice", "rita"])
def test_only_admins_change_patterns_and_regions(
    client_as: ClientAs, cast: dict[str, User], who: str
) -> None:
    pattern = PiiPattern.objects.create(entity="EMPLOYEE_ID", regex=r"EMP-\d{6}")
    collection = Collection.objects.create(name="HR")
    group = Group.objects.get(name=roles.AGENT)
    client = client_as(cast[who])

    assert client.get(reverse("console:pii_patterns")).status_code == 403
    add = {"entity": "BADGE", "regex": r"B-\d+"}
    assert client.post(reverse("console:pii_patterns"), add).status_code == 403
    delete = reverse("console:pii_pattern_delete", args=[pattern.pk])
    assert client.post(delete).status_code == 403
    regions = {"regions": "eu"}
    assert (
        client.post(reverse("console:collection_regions", args=[collection.pk]), regions)
    ).status_code == 403
    assert (
        client.post(reverse("console:group_regions", args=[group.pk]), regions)
    ).status_code == 403

    assert list(PiiPattern.objects.values_list("entity", flat=True)) == ["EMPLOYEE_ID"]
    assert Collection.objects.get(pk=collection.pk).allowed_regions == []
    assert not GroupPolicy.objects.exists()


def test_an_admin_adds_a_pattern_that_is_found_and_redacted(client_as: ClientAs, adam) -> None:
    client = client_as(adam)
    page = client.post(
        reverse("console:pii_patterns"),
        {"entity": "employee_id", "regex": r"EMP-\d{6}", "context": "employee, staff"},
    )
    assert page.status_code == 302
    assert PiiPattern.objects.get().entity == "EMPLOYEE_ID"
    assert "pii_pattern.save" in _actions()

    patterns_load()
    text = (
        "Employee EMP-123456 is locked out. Separately, the build tag in last week's release "
        "notes reads EMP-654321."
    )
    found = [text[f.start : f.end] for f in pii_find(text)]
    assert found == ["EMP-123456"], "the second has no context word before it"
    placeholders = Placeholders()
    assert placeholders.hide(text).startswith("Employee <EMPLOYEE_ID_1> is locked out")

    refused = client.post(reverse("console:pii_patterns"), {"entity": "X_ID", "regex": "("})
    assert refused.status_code == 400
    assert "does not compile" in refused.content.decode()

    listing = client.get(reverse("console:pii_patterns")).content.decode()
    assert "EMPLOYEE_ID" in listing and 'aria-current="page">Personal data</a>' in listing
    client.post(reverse("console:pii_pattern_delete", args=[PiiPattern.objects.get().pk]))
    assert not PiiPattern.objects.exists() and "pii_pattern.delete" in _actions()
    patterns_load()
    assert pii_find(text) == [], "every process drops it on its next load"


def test_an_admin_sets_the_regions_of_collections_and_groups(client_as: ClientAs, adam) -> None:
    collection = Collection.objects.create(name="HR")
    group = Group.objects.get(name=roles.AGENT)
    client = client_as(adam)

    client.post(reverse("console:collection_regions", args=[collection.pk]), {"regions": "EU, us"})
    client.post(reverse("console:group_regions", args=[group.pk]), {"regions": "eu"})
    bad = client.post(
        reverse("console:group_regions", args=[group.pk]), {"regions": "e u!"}, follow=True
    )

    assert Collection.objects.get(pk=collection.pk).allowed_regions == ["eu", "us"]
    assert GroupPolicy.objects.get(group=group).allowed_regions == ["eu"]
    assert "is not a region name" in bad.content.decode()
    assert _actions().count("collection.regions") == 1 and _actions().count("group.regions") == 1
    page = client.get(reverse("console:routing")).content.decode()
    assert 'value="eu, us"' in page and "Group regions" in page


def test_a_person_limits_a_new_keys_regions(client_as: ClientAs, alice, nora) -> None:
    form = {"name": "CI", "scopes": ["chat"], "expires_days": "30", "regions": "eu"}
    assert client_as(nora).post(reverse("api_keys"), form).status_code == 403

    page = client_as(alice).post(reverse("api_keys"), form)

    assert page.status_code == 200
    assert ApiKey.objects.get(user=alice).allowed_regions == ["eu"]
    assert "api_key.regions" in _actions()


def test_the_model_form_offers_the_personal_data_flag(client_as: ClientAs, adam, rita) -> None:
    assert client_as(rita).get(reverse("console:model_new")).status_code == 403
    page = client_as(adam).get(reverse("console:model_new")).content.decode()
    assert 'name="personal_data_allowed"' in page and "May see personal data" in page


def test_the_chat_notes_a_redacted_answer_in_words(client_as: ClientAs, alice) -> None:
    ModelEndpoint.objects.create(name="hosted", provider="fake", model_id="m")
    conversation = services.conversation_create(owner=alice)
    turn = services.turn_create(conversation=conversation, user_text="Mail <b>x</b>")
    result = records.TurnResult(
        status="done",
        answer="Sent to jane.doe@example.com.",
        usage=Usage(),
        cost=0,  # type: ignore[arg-type]
        ttft_ms=1.0,
        total_ms=2.0,
        redacted={"EMAIL_ADDRESS": 1, "PHONE_NUMBER": 2},
    )
    records.turn_finish(turn_id=turn.pk, result=result, tracer=Tracer())

    page = client_as(alice).get(reverse("chat:conversation", args=[conversation.pk]))

    body = page.content.decode()
    assert "Personal data was replaced before it left: 1 email address, 2 phone numbers." in body
    assert "<b>x</b>" not in body, "the question is escaped"
