"""Print a retention archive's records: `manage.py archive_read PATH [--turn ID]`."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chatbot.telemetry.audit import audit_record
from evaluation.retention.archive import ArchiveError, archive_records


class Command(BaseCommand):
    help = "Read an archive file back (checked against its manifest), one JSON record a line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "path", help="The .jsonl.gz file, absolute or under the archive folder."
        )
        parser.add_argument("--turn", type=int, default=None, help="Only this turn's records.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            records = list(archive_records(path=options["path"], turn_id=options["turn"]))
        except ArchiveError as exc:
            raise CommandError(str(exc)) from exc
        audit_record(
            "archive.read",
            details={
                "path": str(options["path"]),
                "turn": options["turn"],
                "records": len(records),
            },
        )
        for record in records:
            self.stdout.write(json.dumps(record, ensure_ascii=False))
