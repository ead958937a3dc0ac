"""The retention job's archives: compressed JSON lines, one file per run and kind, with a
manifest of counts and sha256 sums, under RETENTION_ARCHIVE_DIR. Only a local folder (or a
mounted volume) is supported; object stores are not (boto3 is not a dependency)."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import models

MANIFEST = "manifest.json"


def archive_dir() -> Path:
    return Path(settings.RETENTION_ARCHIVE_DIR)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    return value


def row(obj: models.Model, *, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """A model row as JSON holds it: every column by its attribute name (`owner_id`, ...)."""
    return {
        f.attname: _plain(getattr(obj, f.attname))
        for f in obj._meta.concrete_fields
        if f.name not in leave_out
    }


class ArchiveWriter:
    """Writes one run's archive folder; `close` writes the manifest."""

    def __init__(self, *, name: str) -> None:
        self.folder = archive_dir() / name
        self.files: dict[str, gzip.GzipFile] = {}
        self.counts: dict[str, int] = {}

    def write(self, kind: str, record: dict[str, Any]) -> None:
        if kind not in self.files:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.files[kind] = gzip.open(self.folder / f"{kind}.jsonl.gz", "ab")  # noqa: SIM115 closed in close()
            self.counts.setdefault(kind, 0)
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        self.files[kind].write(line.encode("utf-8"))
        self.counts[kind] += 1

    def close(self) -> dict[str, Any]:
        for handle in self.files.values():
            handle.close()
        if not self.files:
            return {}
        manifest = {
            kind: {
                "file": f"{kind}.jsonl.gz",
                "records": count,
                "sha256": hashlib.sha256(
                    (self.folder / f"{kind}.jsonl.gz").read_bytes()
                ).hexdigest(),
            }
            for kind, count in self.counts.items()
        }
        (self.folder / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        return manifest


class ArchiveError(ValueError):
    """A path outside the archive folder, or a file whose sum does not match its manifest."""


def archive_resolve(path: str | Path) -> Path:
    """An archive file given absolutely or relative to the archive folder, kept inside it."""
    root = archive_dir().resolve()
    candidate = Path(path)
    candidate = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        raise ArchiveError(f"{path} is not an archive file under {root}.")
    return candidate


def archive_verify(path: Path) -> None:
    """Check the file against its folder's manifest (when there is one)."""
    manifest_path = path.parent / MANIFEST
    if not manifest_path.is_file():
        return
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    expected = next((m["sha256"] for m in manifest.values() if m["file"] == path.name), None)
    if expected and hashlib.sha256(path.read_bytes()).hexdigest() != expected:
        raise ArchiveError(f"{path.name} does not match the sum in its manifest.")


def archive_records(*, path: str | Path, turn_id: int | None = None) -> Iterator[dict[str, Any]]:
    """The records of one archive file, checked against its manifest; only those of one turn
    (a turn record carries its own id as `turn_id`) when `turn_id` is given."""
    file = archive_resolve(path)
    archive_verify(file)
    with gzip.open(file, "rt", encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if turn_id is None or turn_id in (record.get("turn_id"), record.get("source_turn_id")):
                yield record


def archives_list() -> list[dict[str, Any]]:
    """Every archive file, newest run first, with its manifest entry."""
    root = archive_dir()
    if not root.is_dir():
        return []
    found = []
    for folder in sorted((p for p in root.iterdir() if p.is_dir()), reverse=True):
        manifest_path = folder / MANIFEST
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        for kind, entry in sorted(manifest.items()):
            found.append({"path": f"{folder.name}/{entry['file']}", "kind": kind, **entry})
    return found
