"""Measure retrieval on an evaluation set: ingest its documents into a scratch collection, ask
every question through the dense leg, the sparse leg and their fusion, print doc-level
recall@k, MRR and search latency side by side, then delete the scratch collection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chatbot.retrieval.search import (
    DEFAULT_CANDIDATES,
    DEFAULT_DENSE_WEIGHT,
    DEFAULT_SPARSE_WEIGHT,
    DEFAULT_TEXT_WEIGHTS,
)
from evaluation.offline.data import BadJsonlFile, load_questions
from evaluation.offline.retrieval import Levers, evaluate, format_table
from evaluation.offline.scratch import IngestFailed, scratch_knowledge_base


def _ks(value: str) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(part) for part in value.split(",") if part.strip()}))
    except ValueError:
        raise CommandError(
            f"--k takes whole numbers separated by commas, e.g. 1,5,10; got {value!r}."
        ) from None
    if not ks or ks[0] < 1:
        raise CommandError("--k values must be 1 or more.")
    return ks


class Command(BaseCommand):
    help = __doc__ or ""

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--documents", required=True, type=Path, help="documents.jsonl")
        parser.add_argument("--questions", required=True, type=Path, help="queries/questions jsonl")
        parser.add_argument("--k", default="1,5,10", help="Cut-offs for recall@k (default 1,5,10).")
        parser.add_argument(
            "--limit", type=int, default=None, help="Ask only the first N questions."
        )
        parser.add_argument("--keep", action="store_true", help="Keep the scratch collection.")
        parser.add_argument(
            "--candidates",
            type=int,
            default=DEFAULT_CANDIDATES,
            help="Depth of each leg before fusion.",
        )
        parser.add_argument("--dense-weight", type=float, default=DEFAULT_DENSE_WEIGHT)
        parser.add_argument("--sparse-weight", type=float, default=DEFAULT_SPARSE_WEIGHT)
        parser.add_argument(
            "--title-weight",
            type=float,
            default=DEFAULT_TEXT_WEIGHTS[3],
            help="Full-text weight (0-1) of a chunk's heading: its document title and section.",
        )
        parser.add_argument(
            "--text-weight",
            type=float,
            default=DEFAULT_TEXT_WEIGHTS[2],
            help="Full-text weight (0-1) of a chunk's body text.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        documents: Path = options["documents"]
        if not documents.is_file():
            raise CommandError(f"No documents file at {documents}.")
        ks = _ks(options["k"])
        try:
            questions = load_questions(options["questions"], limit=options["limit"])
        except BadJsonlFile as exc:
            raise CommandError(str(exc)) from None
        if not questions:
            raise CommandError(f"No questions in {options['questions']}.")
        title_weight, text_weight = options["title_weight"], options["text_weight"]
        if not (0 <= title_weight <= 1 and 0 <= text_weight <= 1):
            raise CommandError("--title-weight and --text-weight take a number from 0 to 1.")
        if options["dense_weight"] < 0 or options["sparse_weight"] < 0:
            raise CommandError("--dense-weight and --sparse-weight must not be negative.")
        if options["candidates"] < 1:
            raise CommandError("--candidates must be 1 or more.")
        levers = Levers(
            candidates=options["candidates"],
            dense_weight=options["dense_weight"],
            sparse_weight=options["sparse_weight"],
            text_weights=(
                DEFAULT_TEXT_WEIGHTS[0],
                DEFAULT_TEXT_WEIGHTS[1],
                text_weight,
                title_weight,
            ),
        )

        try:
            with scratch_knowledge_base(
                documents, purpose="eval_retrieval", keep=options["keep"]
            ) as scratch:
                self.stdout.write(
                    f"Ingested {scratch.documents} documents ({scratch.chunks} chunks) from "
                    f"{documents} in {scratch.ingest_s:.1f} s into scratch collection "
                    f"{scratch.name!r}."
                )
                self.stdout.write(
                    f"Asking {len(questions)} questions (candidates={levers.candidates}, "
                    f"weights dense={levers.dense_weight} sparse={levers.sparse_weight}, "
                    f"full-text title={title_weight} text={text_weight})…"
                )
                reports = evaluate(
                    user=scratch.user,
                    questions=questions,
                    collection_id=scratch.collection.pk,
                    ks=ks,
                    levers=levers,
                )
                self.stdout.write(format_table(reports))
        except IngestFailed as exc:
            raise CommandError(str(exc)) from None
        if options["keep"]:
            self.stdout.write(
                f"Kept collection {scratch.name!r} (visible to group {scratch.name!r})."
            )
