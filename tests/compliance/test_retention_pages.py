"""The Data & retention page and the person page's export and erasure: admins only, every
change audited."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chatbot.models import AuditEntry, LegalHold, RetentionPolicy, RetentionRun, Turn
from evaluation.retention.services import policies_ensure, policy_update, retention_run
from tests.compliance.support import turn_with_everything

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _folders(settings: Any, tmp_path: Path) -> None:
    settings.EXPORTS_DIR = tmp_path / "exports"
    settings.RETENTION_ARCHIVE_DIR = tmp_path / "archive"


def _urls(person: User) -> list[tuple[str, str]]:
    policy = policies_ensure()[0]
    hold = LegalHold.objects.create(user=person, reason="x")
    return [
        ("get", reverse("console:retention")),
        ("get", reverse("console:retention_archive")),
        ("post", reverse("console:retention_policy", args=[policy.pk])),
        ("post", reverse("console:retention_hold_add")),
        ("post", reverse("console:retention_hold_release", args=[hold.pk])),
        ("post", reverse("console:retention_run")),
        ("post", reverse("console:person_export", args=[person.pk])),
        ("post", reverse("console:person_erase", args=[person.pk])),
    ]


def test_nora_agents_and_reviewers_are_refused_everywhere(
    nora: User, alice: User, rita: User, client_as: Callable[[User], Client]
) -> None:
    for user in (nora, alice, rita):
        client = client_as(user)
        for method, url in _urls(rita):
            response = getattr(client, method)(
                url, {"confirm": "rita", "reason": "r", "username": "rita"}
            )
            assert response.status_code == 403, (user.username, url)
    assert LegalHold.objects.filter(released_at__isnull=False).count() == 0
    assert not RetentionRun.objects.exists()
    assert Turn.objects.count() == 0 and User.objects.filter(username="rita").exists()


def test_an_admin_edits_a_policy_holds_and_runs(
    adam: User, alice: User, rita: User, client_as: Callable[[User], Client]
) -> None:
    turn_with_everything(alice, reviewer=rita, days_ago=100, question="<b>old</b>")
    client = client_as(adam)
    policies_ensure()
    policy = RetentionPolicy.objects.get(kind="conversations")
    response = client.post(
        reverse("console:retention_policy", args=[policy.pk]),
        {"conversations-keep_days": "30", "conversations-action": "anonymise"},
    )
    assert response.status_code == 302
    policy.refresh_from_db()
    assert (policy.keep_days, policy.action) == (30, "anonymise")
    page = client.get(reverse("console:retention"))
    assert page.status_code == 200
    assert (
        page.context["rows"][
            [r["policy"].kind for r in page.context["rows"]].index("conversations")
        ]["preview"]
        == 1
    )
    assert (
        client.post(
            reverse("console:retention_hold_add"), {"username": "alice", "reason": "case 1"}
        ).status_code
        == 302
    )
    hold = LegalHold.objects.get(user=alice)
    assert (
        client.post(reverse("console:retention_hold_add"), {"reason": "none named"}).status_code
        == 400
    )
    assert client.post(reverse("console:retention_hold_release", args=[hold.pk])).status_code == 302
    assert client.post(reverse("console:retention_run")).status_code == 302
    assert RetentionRun.objects.get().requested_by == adam
    for action in ("retention.policy", "legal_hold.set", "legal_hold.release"):
        assert AuditEntry.objects.filter(action=action, actor_id=adam.pk).exists(), action


def test_the_archive_reader_escapes_and_audits(
    adam: User, alice: User, rita: User, client_as: Callable[[User], Client]
) -> None:
    turn_with_everything(alice, reviewer=rita, days_ago=100, question="<script>x</script>")
    policies_ensure()
    policy_update(
        policy=RetentionPolicy.objects.get(kind="conversations"),
        keep_days=30,
        action="archive",
        user=adam,
    )
    run = retention_run()
    client = client_as(adam)
    page = client.get(reverse("console:retention"))
    path = f"{run.archive_path}/conversations.jsonl.gz"
    assert path in page.content.decode()
    read = client.get(reverse("console:retention_archive"), {"path": path})
    assert read.status_code == 200
    assert "<script>x</script>" not in read.content.decode()
    assert "&lt;script&gt;" in read.content.decode()
    assert AuditEntry.objects.filter(action="archive.read", actor_id=adam.pk).exists()
    assert (
        client.get(reverse("console:retention_archive"), {"path": "../../etc/passwd"}).status_code
        == 400
    )


def test_an_admin_exports_and_erases_a_person(
    adam: User, alice: User, rita: User, client_as: Callable[[User], Client]
) -> None:
    made = turn_with_everything(alice, reviewer=rita, days_ago=3)
    client = client_as(adam)
    response = client.post(reverse("console:person_export", args=[alice.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/gzip"
    data = json.loads(gzip.decompress(b"".join(response.streaming_content)))  # type: ignore[attr-defined]
    assert data["turns"][0]["turn_id"] == made.turn.pk
    refused = client.post(reverse("console:person_erase", args=[alice.pk]), {"confirm": "nope"})
    assert refused.status_code == 302 and Turn.objects.filter(pk=made.turn.pk).exists()
    client.post(reverse("console:person_erase", args=[alice.pk]), {"confirm": "alice"})
    assert not Turn.objects.filter(pk=made.turn.pk).exists()
    alice.refresh_from_db()
    assert alice.username == f"erased-{alice.pk}"
    assert AuditEntry.objects.filter(action="person.export", actor_id=adam.pk).exists()
    assert AuditEntry.objects.filter(action="person.erase", actor_id=adam.pk).exists()
    assert "Erase" in client.get(reverse("console:person", args=[rita.pk])).content.decode()
