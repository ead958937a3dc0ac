"""Run the retention job once: `manage.py retention_run [--dry-run]`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from evaluation.retention.services import retention_run


class Command(BaseCommand):
    help = "Apply the retention policies now; --dry-run only counts what would go."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count only; change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        run = retention_run(dry_run=options["dry_run"])
        verb = "would remove" if run.dry_run else "removed"
        for kind, per in sorted(run.counts.items()):
            for action, n in per.items():
                self.stdout.write(f"{kind}: {verb} {n} ({action})")
        if not run.counts:
            self.stdout.write("No policy has a duration: nothing to do.")
        if run.status == run.Status.FAILED:
            self.stderr.write(f"Failed: {run.error}")
        if run.archive_path:
            self.stdout.write(f"Archive: {run.archive_path}")
