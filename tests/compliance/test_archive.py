"""Archiving: the retention job writes compressed JSON lines with a manifest, `archive_read`
reads them back (checked against the manifest, audited), and nothing is archived twice."""

from __future__ import annotations

import gzip
import hashlib
import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from chatbot.models import AuditEntry, RetentionPolicy, Span, Turn
from evaluation.retention.archive import archive_records, archives_list
from evaluation.retention.services import policies_ensure, policy_update, retention_run
from tests.compliance.support import turn_with_everything

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _folders(settings: Any, tmp_path: Path) -> Path:
    settings.EXPORTS_DIR = tmp_path / "exports"
    settings.RETENTION_ARCHIVE_DIR = tmp_path / "archive"
    return tmp_path / "archive"


def test_archiving_writes_jsonl_gz_that_reads_back(
    alice: User, rita: User, adam: User, _folders: Path
) -> None:
    old = turn_with_everything(alice, reviewer=rita, days_ago=400, question="kept for years")
    turn_with_everything(alice, reviewer=rita, days_ago=2, question="too recent")
    policies_ensure()
    policy_update(
        policy=RetentionPolicy.objects.get(kind=RetentionPolicy.Kind.CONVERSATIONS),
        keep_days=365,
        action=RetentionPolicy.Action.ARCHIVE,
        user=adam,
    )

    run = retention_run()

    assert run.counts == {"conversations": {"archive": 1}}
    assert not Turn.objects.filter(pk=old.turn.pk).exists()
    folder = _folders / run.archive_path
    manifest = json.loads((folder / "manifest.json").read_text())
    file = folder / "conversations.jsonl.gz"
    assert manifest["conversations"]["records"] == 1
    assert manifest["conversations"]["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    with gzip.open(file, "rt") as lines:
        (record,) = [json.loads(line) for line in lines]
    assert record["user_text"] == "kept for years" and record["spans"] and record["reviews"]

    read = list(
        archive_records(path=f"{run.archive_path}/conversations.jsonl.gz", turn_id=old.turn.pk)
    )
    assert [r["turn_id"] for r in read] == [old.turn.pk]
    out = StringIO()
    call_command("archive_read", str(file), "--turn", str(old.turn.pk), stdout=out)
    assert json.loads(out.getvalue())["answer"] == "answer to kept for years"
    assert AuditEntry.objects.filter(action="archive.read").exists()
    assert [a["kind"] for a in archives_list()] == ["conversations"]

    again = retention_run()
    assert again.counts == {"conversations": {"archive": 0}} and again.archive_path == ""


def test_archive_read_refuses_a_tampered_file_or_one_outside_the_folder(
    alice: User, rita: User, adam: User, _folders: Path, tmp_path: Path
) -> None:
    turn_with_everything(alice, reviewer=rita, days_ago=400)
    policies_ensure()
    policy_update(
        policy=RetentionPolicy.objects.get(kind=RetentionPolicy.Kind.TRACES),
        keep_days=30,
        action=RetentionPolicy.Action.ARCHIVE,
        user=adam,
    )
    run = retention_run()
    assert run.counts == {"traces": {"archive": 1}} and not Span.objects.exists()
    file = _folders / run.archive_path / "traces.jsonl.gz"
    outside = tmp_path / "elsewhere.jsonl.gz"
    outside.write_bytes(file.read_bytes())
    with pytest.raises(CommandError, match="not an archive file"):
        call_command("archive_read", str(outside))
    file.write_bytes(gzip.compress(b'{"forged": true}\n'))
    with pytest.raises(CommandError, match="does not match"):
        call_command("archive_read", str(file))
