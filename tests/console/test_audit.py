"""The audit log: admin actions, sensitive reads and sign-ins recorded as they happen,
append-only in Postgres itself, searchable and exportable by admins only."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import ProgrammingError, transaction
from django.test import Client
from django.urls import reverse

from chatbot.console import services
from chatbot.models import AuditEntry, Export, ModelEndpoint, RoutingRule
from chatbot.telemetry.audit import UnknownAction, audit_record
from tests.conftest import PASSWORD
from tests.evaluation.exports.support import review, run_export
from tests.evaluation.judging import finished_turn
from tests.evaluation.review.support import flagged_item

pytestmark = pytest.mark.django_db

ClientAs = Callable[[User], Client]


def _streamed(response: Any) -> str:
    """A streamed download's body (StreamingHttpResponse)."""
    return b"".join(response.streaming_content).decode()


def _entries(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("pk"))


# --- append-only ----------------------------------------------------------------------------------


def test_postgres_refuses_to_change_or_delete_an_entry(adam: User) -> None:
    entry = audit_record("settings.update", actor=adam, details={"changed": {}})

    for change in (
        lambda: AuditEntry.objects.filter(pk=entry.pk).update(actor_name="someone else"),
        lambda: AuditEntry.objects.filter(pk=entry.pk).delete(),
        entry.delete,
    ):
        with pytest.raises(ProgrammingError, match="append-only"), transaction.atomic():
            change()
    entry.refresh_from_db()
    assert entry.actor_name == "adam" and AuditEntry.objects.count() == 1


def test_it_refuses_an_action_it_does_not_know() -> None:
    with pytest.raises(UnknownAction):
        audit_record("settings.updated")
    assert not AuditEntry.objects.exists()


# --- sign-ins ---------------------------------------------------------------------------------------


def test_it_records_sign_ins_failed_attempts_and_sign_outs(alice: User) -> None:
    client = Client()
    login = reverse("login")
    client.post(login, {"username": "alice", "password": "wrong-password-1"})
    client.post(login, {"username": "alice", "password": PASSWORD})
    client.post(reverse("logout"))

    [failed] = _entries("auth.sign_in_failed")
    assert failed.details == {"username": "alice"} and failed.actor_id is None
    assert "wrong-password" not in json.dumps(failed.details)
    [signed_in] = _entries("auth.sign_in")
    assert (signed_in.actor_id, signed_in.actor_name) == (alice.pk, "alice")
    assert signed_in.ip == "127.0.0.1" and signed_in.request_path == login
    assert signed_in.category == "sign_in"
    [signed_out] = _entries("auth.sign_out")
    assert signed_out.actor_id == alice.pk


# --- admin actions ----------------------------------------------------------------------------------


def test_it_records_admin_actions_with_who_what_and_the_change(
    adam: User, client_as: ClientAs, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    fake_endpoint()
    other = fake_endpoint(name="other", default=False)
    client = client_as(adam)

    client.post(reverse("console:model_default", args=[other.pk]))
    client.post(
        reverse("console:assistant"),
        {
            "grounding": "required",
            "retrieval_k": 7,
            "min_similarity": 0.4,
            "min_coverage": 0.5,
            "min_answerable": 0.5,
            "max_steps": 4,
            "no_answer_message": "I couldn't find this.",
            "cache_similarity": 0.95,
        },
    )
    rule = services.routing_rule_save(
        rule=None, data={"kind": RoutingRule.Kind.TASK, "name": "small tasks"}
    )
    client.post(reverse("console:routing_rule_toggle", args=[rule.pk]))

    [default] = _entries("endpoint.default")
    assert (default.actor_name, default.target_type, default.target_id) == (
        "adam",
        "chatbot.modelendpoint",
        str(other.pk),
    )
    assert default.ip == "127.0.0.1" and default.category == "admin"
    [settings] = _entries("settings.update")
    assert settings.details["changed"]["retrieval_k"][1] == 7
    assert settings.details["changed"]["min_similarity"][1] == 0.4
    [saved] = _entries("routing_rule.save")
    assert saved.details["created"] is True and saved.actor_id is None, "no request: nobody"
    [toggled] = _entries("routing_rule.enable")
    assert toggled.actor_name == "adam" and toggled.details == {"enabled": not rule.enabled}


def test_a_refused_change_leaves_no_entry(
    adam: User, client_as: ClientAs, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    fake_endpoint()
    disabled = fake_endpoint(name="off", default=False)
    ModelEndpoint.objects.filter(pk=disabled.pk).update(enabled=False)
    client_as(adam).post(reverse("console:model_default", args=[disabled.pk]))
    assert not _entries("endpoint.default")


# --- sensitive reads ---------------------------------------------------------------------------------


def test_it_records_a_reviewer_opening_a_conversation(
    alice: User, rita: User, client_as: ClientAs
) -> None:
    item = flagged_item(alice)
    assert client_as(rita).get(reverse("review:item", args=[item.pk])).status_code == 200

    [read] = _entries("read.conversation")
    assert (read.actor_name, read.category) == ("rita", "read")
    assert read.target_type == "chatbot.conversation"
    assert read.target_id == str(item.turn.conversation_id)
    assert read.details == {"review_item": item.pk, "turn": item.turn_id}


def test_it_records_a_trace_read_only_when_personal_data_is_shown(
    alice: User, adam: User, client_as: ClientAs, settings: Any
) -> None:
    turn = finished_turn(alice, question="Call me on +44 20 7946 0958")
    page = reverse("dashboard:turn", args=[turn.pk])

    settings.TRACE_PII_POLICY = "redact"
    assert client_as(adam).get(page).status_code == 200
    assert not _entries("read.trace")

    settings.TRACE_PII_POLICY = "admins"
    assert client_as(adam).get(page).status_code == 200
    [read] = _entries("read.trace")
    assert read.target_id == str(turn.pk) and read.actor_name == "adam"


def test_it_records_an_export_download(alice: User, rita: User, client_as: ClientAs) -> None:
    review(finished_turn(alice), rita, approved=True)
    export, _ = run_export(Export.Kind.SFT)
    response = client_as(rita).get(reverse("review:export_download", args=[export.pk]))
    assert response.status_code == 200
    [read] = _entries("read.export")
    assert read.actor_name == "rita" and read.target_id == str(export.pk)


# --- the page ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["nora", "alice", "rita"])
def test_only_admins_read_or_export_the_log(
    cast: dict[str, User], client_as: ClientAs, who: str
) -> None:
    client = client_as(cast[who])
    assert client.get(reverse("console:audit")).status_code == 403
    assert client.get(reverse("console:audit"), {"export": "csv"}).status_code == 403
    assert not _entries("audit.export")


def test_an_admin_searches_the_log_and_exports_it_which_is_recorded(
    adam: User, alice: User, client_as: ClientAs
) -> None:
    client = client_as(adam)  # signing in is recorded too: one entry
    audit_record("settings.update", actor=adam, details={"changed": {"retrieval_k": [5, 7]}})
    audit_record("auth.sign_in_failed", details={"username": '=HYPERLINK("http://x")'}, actor=None)
    audit_record("auth.sign_in", actor=alice)
    # "@" (like "=", "+", "-") starts a formula in a spreadsheet: written as text.
    audit_record("auth.sign_in", actor=User.objects.create_user("@sum", password="x-1-long-pw"))

    page = client.get(reverse("console:audit")).content.decode()
    assert "Changed the answer and grounding settings" in page and "5 entries" in page
    only = client.get(reverse("console:audit"), {"category": "sign_in", "actor": "alice"})
    assert "1 entry" in only.content.decode()
    bad = client.get(reverse("console:audit"), {"start": "2026-02-02", "end": "2026-01-01"})
    assert bad.status_code == 400 and "is after" in bad.content.decode()

    exported = client.get(reverse("console:audit"), {"export": "csv", "category": "sign_in"})
    assert exported["Content-Disposition"].startswith('attachment; filename="audit-')
    rows = list(csv.DictReader(io.StringIO(_streamed(exported))))
    assert sorted(r["action"] for r in rows) == ["auth.sign_in"] * 3 + ["auth.sign_in_failed"]
    failed = next(r for r in rows if r["action"] == "auth.sign_in_failed")
    assert json.loads(failed["details"])["username"].startswith("=HYPERLINK"), "inside JSON"
    assert {r["actor_name"] for r in rows} == {"adam", "alice", "'@sum", ""}
    lines = client.get(reverse("console:audit"), {"export": "jsonl"})
    decoded = [json.loads(x) for x in _streamed(lines).splitlines()]
    assert decoded[0]["action"] == "audit.export", "the first export is in the second"
    [first, second] = _entries("audit.export")
    assert first.details["format"] == "csv" and first.details["filters"] == {"category": "sign_in"}
    assert first.details["entries"] == 4 and second.details["format"] == "jsonl"


def test_it_records_knowledge_base_and_ab_test_changes(adam: User, tmp_path: Any) -> None:
    from chatbot.knowledge import services as knowledge
    from evaluation.abtests import services as abtests

    (tmp_path / "faq.md").write_text("# Printers\n\nTray 2 jams: lift the lever.\n")
    collection = knowledge.collection_create(name="Handbook")
    source = knowledge.source_create(
        collection=collection, kind="path", location=str(tmp_path), created_by=adam, queue=False
    )
    knowledge.source_set_enabled(source=source, enabled=False)
    source_id = source.pk
    knowledge.source_delete(source=source)
    test = abtests.abtest_save(
        test=None,
        name="Shorter k",
        variants=[
            abtests.VariantSpec(name="Control", weight=50, is_control=True),
            abtests.VariantSpec(name="k3", weight=50, retrieval={"retrieval_k": 3}),
        ],
        user=adam,
    )
    abtests.abtest_start(test=test)
    abtests.abtest_stop(test=test)

    logged = list(AuditEntry.objects.order_by("pk").values_list("action", "actor_name"))
    assert logged == [
        ("collection.create", ""),
        ("source.create", "adam"),
        ("source.enable", ""),
        ("source.delete", ""),
        ("ab_test.save", "adam"),
        ("ab_test.start", ""),
        ("ab_test.stop", ""),
    ]
    deleted = AuditEntry.objects.get(action="source.delete")
    assert deleted.target_id == str(source_id)
    assert deleted.details["location"] == str(tmp_path.resolve())
