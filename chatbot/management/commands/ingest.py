from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chatbot.knowledge import services
from chatbot.knowledge.ingest import source_ingest
from chatbot.models import Collection, Document, Source

BAR_WIDTH = 30


class Command(BaseCommand):
    help = (
        "Ingest a file or folder on this server into a knowledge-base collection (created if "
        "missing). Shows progress and waits for the job, or queues it with --no-wait."
    )
    _last_draw = 0.0

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="A file or a folder (searched recursively).")
        parser.add_argument("--collection", required=True, help="Collection name.")
        parser.add_argument(
            "--kind",
            choices=[Source.Kind.PATH, Source.Kind.TICKETS],
            default=Source.Kind.PATH,
            help="'tickets' reads csv/jsonl of past support tickets.",
        )
        parser.add_argument("--name", default="", help="A label for the source.")
        parser.add_argument(
            "--no-wait", action="store_true", help="Queue the job for a worker and return at once."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["collection"].strip()
        try:
            collection = Collection.objects.filter(name=name).first()
            if collection is None:
                collection = services.collection_create(name=name)
                self.stdout.write(f"Created collection {name!r}.")
            known = set(collection.sources.values_list("pk", flat=True))
            source = services.source_create(
                collection=collection,
                kind=options["kind"],
                location=options["path"],
                name=options["name"],
                queue=options["no_wait"],
            )
        except services.InvalidSource as exc:
            raise CommandError(str(exc)) from None
        if source.pk in known:
            # Idempotent: the same path into the same collection is the same source.
            self.stdout.write(f"Updating source #{source.pk}, already in {name!r}.")
        if options["no_wait"]:
            self.stdout.write(f"Queued source #{source.pk} ({source.location}) for a worker.")
            return
        source = source_ingest(source_id=source.pk, on_progress=self._progress)
        self.stderr.write("")
        self._summary(source)
        if source.status != Source.Status.DONE:
            raise CommandError(f"Ingestion failed: {source.error}")

    def _progress(self, source: Source) -> None:
        now = time.monotonic()
        finished = source.documents_total and source.documents_done >= source.documents_total
        if now - self._last_draw < 0.2 and not finished:
            return
        self._last_draw = now
        total = source.documents_total or 1
        filled = int(BAR_WIDTH * min(source.documents_done / total, 1))
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        self.stderr.write(
            f"\r[{bar}] {source.documents_done}/{source.documents_total} documents, "
            f"{source.chunks_done}/{source.chunks_total} chunks",
            ending="",
        )
        self.stderr.flush()

    def _summary(self, source: Source) -> None:
        failed = Document.objects.filter(source=source, status=Document.Status.ERROR)
        self.stdout.write(
            f"Source #{source.pk} {source.status}: {source.documents_done} documents, "
            f"{source.chunks_done} chunks, {failed.count()} documents with errors."
        )
        for document in failed.order_by("external_id")[:20]:
            self.stdout.write(f"  {document.external_id}: {document.error}")
