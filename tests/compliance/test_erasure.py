"""A person's export holds their data and no one else's; erasing them leaves nothing derived
behind, checked table by table over the whole data model and in the exports folder."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.db import models

from chatbot.accounts.services import api_key_create
from chatbot.models import (
    AuditEntry,
    Conversation,
    DatasetItem,
    Feedback,
    Review,
    Turn,
)
from evaluation.retention.people import (
    KEPT_POINTERS,
    ErasureRefused,
    person_data,
    person_erase,
    person_export,
)
from evaluation.retention.services import hold_release, hold_set
from tests.compliance.support import export_with, turn_with_everything

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _folders(settings: Any, tmp_path: Path) -> None:
    settings.EXPORTS_DIR = tmp_path / "exports"
    settings.RETENTION_ARCHIVE_DIR = tmp_path / "archive"


def _pointing_at(model: type[models.Model], target: type[models.Model], pks: set[Any]) -> int:
    """Rows of `model` whose foreign keys point at any of `pks` of `target`."""
    found = 0
    for field in model._meta.concrete_fields:
        if field.is_relation and field.related_model is target:
            if target is User and (model._meta.label, field.name) in KEPT_POINTERS:
                continue
            found += model._default_manager.filter(**{f"{field.name}__in": pks}).count()
    return found


def _setup(alice: User, rita: User, adam: User) -> dict[str, Any]:
    mine = turn_with_everything(alice, reviewer=rita, days_ago=3, question="alice secret")
    theirs = turn_with_everything(rita, reviewer=alice, days_ago=3, question="rita question")
    Feedback.objects.create(turn=theirs.turn, user=alice, rating=1, comment="alice liked it")
    api_key_create(user=alice, name="laptop")
    export = export_with([mine.turn, theirs.turn])
    return {"mine": mine, "theirs": theirs, "export": export}


def test_the_export_holds_the_person_and_no_one_else(alice: User, rita: User, adam: User) -> None:
    made = _setup(alice, rita, adam)
    data = json.loads(gzip.decompress(b"".join(person_export(user=alice, by=adam))))
    assert data["account"]["username"] == "alice" and "password" not in data["account"]
    assert [t["turn_id"] for t in data["turns"]] == [made["mine"].turn.pk]
    assert data["turns"][0]["user_text"] == "alice secret"
    assert [c["id"] for c in data["conversations"]] == [made["mine"].conversation.pk]
    assert [r["turn_id"] for r in data["reviews_written"]] == [made["theirs"].turn.pk]
    assert {f["comment"] for f in data["feedback_given"]} == {"bad: alice secret", "alice liked it"}
    assert data["api_keys"] and all("hashed_secret" not in k for k in data["api_keys"])
    assert "rita question" not in json.dumps(data["turns"] + data["conversations"])
    entry = AuditEntry.objects.get(action="person.export")
    assert entry.target_id == str(alice.pk) and entry.actor_id == adam.pk
    assert person_data(user=rita)["account"]["username"] == "rita"


def test_erasure_leaves_nothing_derived_table_by_table_and_on_disk(
    alice: User, rita: User, adam: User, settings: Any
) -> None:
    made = _setup(alice, rita, adam)
    turn_ids = set(Turn.objects.filter(conversation__owner=alice).values_list("pk", flat=True))
    conversation_ids = {made["mine"].conversation.pk}

    counts = person_erase(user=alice, confirm="alice", by=adam)

    assert counts["turns"] == 1
    for model in apps.get_app_config("chatbot").get_models():
        assert _pointing_at(model, User, {alice.pk}) == 0, model.__name__
        assert _pointing_at(model, Turn, turn_ids) == 0, model.__name__
        assert _pointing_at(model, Conversation, conversation_ids) == 0, model.__name__
    assert not DatasetItem.objects.filter(question="alice secret").exists()
    assert not Review.objects.filter(turn=made["theirs"].turn).exists()  # alice's review of it
    assert Turn.objects.filter(pk=made["theirs"].turn.pk).exists()
    for file in Path(settings.EXPORTS_DIR).rglob("*"):
        if file.is_file():
            text = file.read_text(encoding="utf-8")
            assert "alice secret" not in text and "rita question" in text
    alice.refresh_from_db()
    assert alice.username == f"erased-{alice.pk}"
    assert (alice.email, alice.first_name, alice.last_name, alice.is_active) == ("", "", "", False)
    assert not alice.has_usable_password() and not alice.groups.exists()
    entry = AuditEntry.objects.get(action="person.erase")
    assert entry.actor_id == adam.pk and entry.target_id == str(alice.pk)
    # The audit log keeps its entries (append-only by design), the hold's included.
    assert AuditEntry.objects.filter(actor_id=adam.pk).count() >= 1


def test_erasure_is_refused_under_a_legal_hold_or_without_the_username(
    alice: User, rita: User, adam: User
) -> None:
    made = _setup(alice, rita, adam)
    with pytest.raises(ErasureRefused, match="username"):
        person_erase(user=alice, confirm="alicee", by=adam)
    hold = hold_set(conversation=made["mine"].conversation, reason="case 7", by=adam)
    with pytest.raises(ErasureRefused, match="legal hold"):
        person_erase(user=alice, confirm="alice", by=adam)
    assert Turn.objects.filter(pk=made["mine"].turn.pk).exists()
    hold_release(hold=hold, by=adam)
    person_erase(user=alice, confirm="alice", by=adam)
    assert not Turn.objects.filter(pk=made["mine"].turn.pk).exists()
