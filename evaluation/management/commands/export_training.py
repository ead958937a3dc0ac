"""Write a training export (fine-tuning rows or DPO preference pairs) in this process and copy it
to a file: the same rows, scrubbing and de-duplication as the export pages, recorded as an export."""

from __future__ import annotations

import shutil
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chatbot.models import Export
from evaluation.exports import services


class Command(BaseCommand):
    help = __doc__ or ""

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--kind", required=True, choices=Export.Kind.values)
        parser.add_argument("--out", required=True, type=Path, help="Where to write the jsonl.")
        parser.add_argument("--from", dest="date_from", default=None, help="YYYY-MM-DD")
        parser.add_argument("--to", dest="date_to", default=None, help="YYYY-MM-DD, inclusive")

    def handle(self, *args: object, **options: object) -> None:
        out = Path(str(options["out"]))
        if not out.parent.is_dir():
            raise CommandError(f"The folder {out.parent} does not exist.")
        try:
            export = services.export_create(
                kind=str(options["kind"]),
                date_from=options["date_from"] or None,  # type: ignore[arg-type]
                date_to=options["date_to"] or None,  # type: ignore[arg-type]
                queue=False,
            )
        except services.InvalidExport as exc:
            raise CommandError(str(exc)) from exc
        services.export_run(export_id=export.pk)
        export.refresh_from_db()
        path = services.export_file(export)
        if export.status != Export.Status.DONE or path is None:
            raise CommandError(export.error or "The export did not finish.")
        shutil.copyfile(path, out)
        self.stdout.write(
            f"Export {export.pk}: {export.rows_written} rows to {out} "
            f"({export.duplicates_dropped} duplicates dropped, "
            f"{export.pii_redacted} personal data items replaced)."
        )
