"""Measure retrieval on an evaluation set: ingest its documents into a scratch collection, ask
every question through the dense leg, the sparse leg and their fusion, print doc-level
recall@k, MRR and search latency side by side, then delete the scratch collection.

With `--splits FILE --part tune|confirm|both`, only the questions of that part of the set are
asked (`both`: each part's table, then the two together). Every document of the set is ingested
whichever part is asked, so the parts face the same distractors and their figures compare."""

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
from evaluation.offline.data import BadJsonlFile, Question, load_questions
from evaluation.offline.retrieval import Levers, ModeReport, evaluate, format_table
from evaluation.offline.scratch import IngestFailed, scratch_knowledge_base
from evaluation.offline.splits import PARTS, BadSplits, split_parts


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
        parser.add_argument(
            "--splits",
            type=Path,
            default=None,
            help="splits.json with each set's tuning and confirming parts (default: no split, "
            "every question).",
        )
        parser.add_argument(
            "--part",
            choices=[*PARTS, "both"],
            default=None,
            help="With --splits: ask only this part's questions (both: each part, side by side).",
        )
        parser.add_argument(
            "--set",
            dest="split_set",
            default=None,
            help="With --splits: the set the questions are (default: the one whose parts hold "
            "every question id, e.g. covidqa_dev or faq).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        documents: Path = options["documents"]
        if not documents.is_file():
            raise CommandError(f"No documents file at {documents}.")
        ks = _ks(options["k"])
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit must be 1 or more.")
        try:
            questions = load_questions(options["questions"])
        except BadJsonlFile as exc:
            raise CommandError(str(exc)) from None
        if not questions:
            raise CommandError(f"No questions in {options['questions']}.")
        parts = self._parts(questions, options)
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
                settings = (
                    f"candidates={levers.candidates}, weights dense={levers.dense_weight} "
                    f"sparse={levers.sparse_weight}, full-text title={title_weight} "
                    f"text={text_weight}"
                )
                measured: list[dict[str, ModeReport]] = []
                for part, asked in parts.items():
                    of_part = "" if part == "all" else f" of part {part}"
                    self.stdout.write(f"Asking {len(asked)} questions{of_part} ({settings})…")
                    reports = evaluate(
                        user=scratch.user,
                        questions=asked,
                        collection_id=scratch.collection.pk,
                        ks=ks,
                        levers=levers,
                    )
                    self.stdout.write(format_table(reports))
                    measured.append(reports)
                if len(measured) == 2:
                    tune, confirm = measured
                    self.stdout.write("Both parts together (the whole set):")
                    self.stdout.write(
                        format_table({mode: tune[mode].merged(confirm[mode]) for mode in tune})
                    )
        except IngestFailed as exc:
            raise CommandError(str(exc)) from None
        if options["keep"]:
            self.stdout.write(
                f"Kept collection {scratch.name!r} (visible to group {scratch.name!r})."
            )

    def _parts(
        self, questions: list[Question], options: dict[str, Any]
    ) -> dict[str, list[Question]]:
        """The questions to ask by part ("all" without --splits), each cut to --limit."""
        limit, path, part = options["limit"], options["splits"], options["part"]
        if (path is None) != (part is None):
            raise CommandError("--splits and --part go together, e.g. --splits FILE --part tune.")
        if path is None:
            if options["split_set"] is not None:
                raise CommandError("--set needs --splits FILE --part tune|confirm|both.")
            return {"all": questions[:limit]}
        try:
            split, parts = split_parts(
                questions,
                path=path,
                parts=PARTS if part == "both" else (part,),
                set_name=options["split_set"],
                key=lambda q: (q.id, q.relevant),
            )
        except BadSplits as exc:
            raise CommandError(str(exc)) from None
        for name, asked in parts.items():
            self.stdout.write(
                f"Set {split.name!r} of {path} (split by {split.by}), part {name}: "
                f"{len(asked)} of {len(questions)} questions."
            )
            if not asked:
                raise CommandError(
                    f"Part {name} of set {split.name!r} holds none of the questions."
                )
        return {name: asked[:limit] for name, asked in parts.items()}
