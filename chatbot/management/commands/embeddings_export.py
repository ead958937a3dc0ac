from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chatbot.llm.embeddings import onnx_export


class Command(BaseCommand):
    help = (
        "Export the embedding model's question path to ONNX (under EMBEDDING_ONNX_DIR) for "
        "ONNX Runtime. Quick when the export is already there; `make model` runs it."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--force", action="store_true", help="Export again even if present.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            path, written = onnx_export(force=options["force"])
        except (OSError, ValueError) as exc:
            raise CommandError(f"The export failed: {exc}") from exc
        self.stdout.write(f"{'exported' if written else 'already exported'}: {path}")
