"""Measure grounded answers on an evaluation set: ingest most of its documents into a scratch
collection, answer the questions about them through the real pipeline (token F1, containment of
the gold answer, citations) and the questions about the held-out rest (how often the assistant
refuses), print the figures, then delete the scratch collection, user and group.

No chat turns are written, so the figures never reach production metrics.

With `--splits FILE --part tune|confirm`, only that part's questions are asked and the held-out
articles are drawn from that part's articles; the rest of the set is ingested as distractors
(see `evaluation.offline.answers`). The JSON output gains "part" and "split_set"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper

from chatbot.llm.router import route_choose
from chatbot.llm.types import ModelError
from chatbot.models import AssistantSettings
from evaluation.datasets.services import InvalidExperiment, retrieval_settings
from evaluation.offline.answers import Outcome, RunSettings, evaluate, figures, format_table
from evaluation.offline.data import (
    BadJsonlFile,
    GoldQuestion,
    load_documents,
    load_gold_questions,
)
from evaluation.offline.scratch import IngestFailed, Scratch
from evaluation.offline.splits import PARTS, BadSplits, split_parts

SETTING_KEYS = ("grounding", "k", "min_similarity", "min_coverage", "min_answerable")


class Command(BaseCommand):
    help = __doc__ or ""
    _info: OutputWrapper

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--documents", required=True, type=Path, help="documents.jsonl")
        parser.add_argument(
            "--questions",
            required=True,
            type=Path,
            help='questions.jsonl: {"id", "question", "answers": [...], "doc_id"} a line',
        )
        parser.add_argument(
            "--endpoint", default=None, help="Catalogue endpoint name (default: the default one)."
        )
        parser.add_argument(
            "--holdout",
            type=float,
            default=0.3,
            help="Share of the documents NOT ingested; their questions test refusal (default 0.3).",
        )
        parser.add_argument("--limit", type=int, default=40, help="Questions per set (default 40).")
        parser.add_argument(
            "--k",
            type=int,
            default=None,
            help="Passages per answer (k); default: the saved setting.",
        )
        parser.add_argument(
            "--min-similarity",
            type=float,
            default=None,
            help="Cosine similarity below which retrieval says it doesn't know (default: saved).",
        )
        parser.add_argument(
            "--min-coverage",
            type=float,
            default=None,
            help="Share of the question's words the relevant chunks must contain (default: saved).",
        )
        parser.add_argument(
            "--min-answerable",
            type=float,
            default=None,
            help="The no-answer classifier's probability below which the assistant says it "
            "doesn't know (default: saved; 0: off).",
        )
        parser.add_argument(
            "--grounding",
            choices=AssistantSettings.Grounding.values,
            default=None,
            help="Grounding mode (default: saved setting).",
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")
        parser.add_argument(
            "--splits",
            type=Path,
            default=None,
            help="splits.json with each set's tuning and confirming parts (default: no split).",
        )
        parser.add_argument(
            "--part",
            choices=PARTS,
            default=None,
            help="With --splits: ask only this part's questions, holding out this part's articles.",
        )
        parser.add_argument(
            "--set",
            dest="split_set",
            default=None,
            help="With --splits: the set the questions are (default: the one whose parts hold "
            "every question's article, e.g. covidqa_dev).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        run = self._settings(options)
        holdout, limit = options["holdout"], options["limit"]
        if not 0 <= holdout < 1:
            raise CommandError("--holdout takes a share from 0 to below 1, e.g. 0.3.")
        if limit < 1:
            raise CommandError("--limit must be 1 or more.")
        for option in ("documents", "questions"):
            if not options[option].is_file():
                raise CommandError(f"No {option} file at {options[option]}.")
        try:
            documents = load_documents(options["documents"])
            questions = load_gold_questions(options["questions"])
        except BadJsonlFile as exc:
            raise CommandError(str(exc)) from None
        if not documents:
            raise CommandError(f"No documents in {options['documents']}.")
        if not questions:
            raise CommandError(f"No questions in {options['questions']}.")
        questions, articles, split_set = self._part(questions, documents, options)
        try:
            endpoint = route_choose(requested=options["endpoint"]).endpoint.name
        except ModelError as exc:
            raise CommandError(exc.user_message) from None

        as_json = options["json"]
        # With --json, stdout carries only the JSON object.
        self._info = self.stderr if as_json else self.stdout
        try:
            report = evaluate(
                documents=documents,
                questions=questions,
                run=run,
                endpoint_name=endpoint,
                holdout=holdout,
                limit=limit,
                articles=articles,
                part=options["part"],
                split_set=split_set,
                on_ingested=self._ingested,
                progress=self._progress,
            )
        except IngestFailed as exc:
            raise CommandError(str(exc)) from None
        data = figures(report)
        if as_json:
            self.stdout.write(json.dumps(data, ensure_ascii=False))
            return
        if report.skipped_questions:
            self.stdout.write(
                f"Skipped {report.skipped_questions} questions whose doc_id is not a document."
            )
        self.stdout.write(format_table(data))

    def _part(
        self, questions: list[GoldQuestion], documents: dict[str, Any], options: dict[str, Any]
    ) -> tuple[list[GoldQuestion], set[str] | None, str | None]:
        """The part's questions, the articles to hold out from, and the set's name."""
        path, part = options["splits"], options["part"]
        if (path is None) != (part is None):
            raise CommandError("--splits and --part go together, e.g. --splits FILE --part tune.")
        if path is None:
            if options["split_set"] is not None:
                raise CommandError("--set needs --splits FILE --part tune|confirm.")
            return questions, None, None
        try:
            split, parts = split_parts(
                questions,
                path=path,
                parts=(part,),
                set_name=options["split_set"],
                key=lambda q: (q.id, (q.doc_id,)),
            )
        except BadSplits as exc:
            raise CommandError(str(exc)) from None
        if not parts[part]:
            raise CommandError(f"Part {part} of set {split.name!r} holds none of the questions.")
        articles = set(split.ids(part)) if split.by == "doc" else None
        return parts[part], articles, split.name

    def _settings(self, options: dict[str, Any]) -> RunSettings:
        """The flags over the saved settings, resolved as an experiment resolves its own."""
        bounds = (("k", 1, 20), ("min_similarity", 0, 1), ("min_coverage", 0, 1))
        for flag, low, high in (*bounds, ("min_answerable", 0, 1)):
            value = options[flag]
            if value is not None and not low <= value <= high:
                name = "--" + flag.replace("_", "-")
                raise CommandError(f"{name} takes a number from {low} to {high}.")
        try:
            chosen = retrieval_settings({key: options[key] for key in SETTING_KEYS})
        except InvalidExperiment as exc:
            raise CommandError(str(exc)) from None
        return RunSettings(
            grounding=chosen["grounding"],
            k=chosen["k"],
            min_similarity=chosen["min_similarity"],
            min_coverage=chosen["min_coverage"],
            min_answerable=chosen["min_answerable"],
        )

    def _ingested(self, scratch: Scratch) -> None:
        self._info.write(
            f"Ingested {scratch.documents} documents ({scratch.chunks} chunks) in "
            f"{scratch.ingest_s:.1f} s into scratch collection {scratch.name!r}."
        )

    def _progress(self, number: int, total: int, outcome: Outcome) -> None:
        kind = "answerable" if outcome.answerable else "unanswerable"
        if outcome.error:
            verdict = f"error: {outcome.error}"
        elif outcome.refused:
            verdict = "no answer (retrieval)" if outcome.no_answer else "refused"
        else:
            verdict = f"F1 {outcome.f1:.2f}"
        self.stderr.write(
            f"question {number} of {total} ({kind} {outcome.id}): {verdict}, "
            f"{outcome.latency_ms:.0f} ms"
        )
