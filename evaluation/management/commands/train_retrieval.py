"""Train the reranker and the no-answer classifier on the tuning parts of evaluation sets, measure
both on the tuning and the confirming parts, and write them where search reads them.

    manage.py train_retrieval --splits ../shared/evalsets/splits.json \\
        --documents ../shared/evalsets/faq/documents.jsonl \\
        --questions ../shared/evalsets/faq/queries.jsonl \\
        --documents ../shared/evalsets/covidqa_dev/documents.jsonl \\
        --questions ../shared/evalsets/covidqa_dev/questions.jsonl

Each set is ingested into its own scratch collection (deleted afterwards) and each of its
questions asked once. Only tuning questions are fitted. Running it twice on the same files
writes the same two files (`--out`, default: the shipped `chatbot/retrieval/weights/`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chatbot.retrieval.answerable import ANSWERABLE_PATH, THRESHOLDS
from chatbot.retrieval.rerank import RERANKER_PATH, LinearModel
from evaluation.offline.data import BadJsonlFile, load_questions
from evaluation.offline.scratch import IngestFailed, scratch_knowledge_base
from evaluation.offline.splits import PARTS, BadSplits, split_parts
from evaluation.offline.training import (
    AnswerableExample,
    Asked,
    TradeOff,
    answerable_examples,
    ask_all,
    choose_threshold,
    doc_recall,
    trade_offs,
    train_answerable,
    train_reranker,
)

KS = (1, 5, 10)


class Command(BaseCommand):
    help = __doc__ or ""

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--documents", action="append", required=True, type=Path, help="a set's documents"
        )
        parser.add_argument(
            "--questions",
            action="append",
            required=True,
            type=Path,
            help="that set's questions (give --documents and --questions once per set)",
        )
        parser.add_argument(
            "--splits", required=True, type=Path, help="splits.json: each set's two parts"
        )
        parser.add_argument(
            "--out",
            type=Path,
            default=RERANKER_PATH.parent,
            help="Folder for reranker.json and answerable.json (default: the shipped ones).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        pairs = list(zip(options["documents"], options["questions"], strict=False))
        if len(options["documents"]) != len(options["questions"]):
            raise CommandError("Give one --questions file for each --documents file, in order.")
        sets = []
        for documents, questions_path in pairs:
            if not documents.is_file():
                raise CommandError(f"No documents file at {documents}.")
            try:
                questions = load_questions(questions_path)
                split, parts = split_parts(
                    questions,
                    path=options["splits"],
                    parts=PARTS,
                    set_name=None,
                    key=lambda q: (q.id, q.relevant),
                )
            except (BadJsonlFile, BadSplits, OSError) as exc:
                raise CommandError(str(exc)) from None
            sets.append((split.name, documents, parts))

        asked: list[Asked] = []
        for name, documents, parts in sets:
            try:
                with scratch_knowledge_base(documents, purpose="train_retrieval") as scratch:
                    self.stdout.write(
                        f"{name}: ingested {scratch.documents} documents ({scratch.chunks} "
                        f"chunks) in {scratch.ingest_s:.1f} s; asking "
                        + ", ".join(f"{len(qs)} {part}" for part, qs in parts.items())
                        + " questions…"
                    )
                    asked += ask_all(
                        user=scratch.user,
                        collection_id=scratch.collection.pk,
                        set_name=name,
                        parts=parts,
                    )
            except IngestFailed as exc:
                raise CommandError(str(exc)) from None

        try:
            reranker = train_reranker(asked)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        names = [name for name, _, _ in sets]
        recall = self._recall_table(asked, reranker, names)
        reranker = _with_about(reranker, trained_on=_trained_on(asked), recall=recall)

        examples = answerable_examples(asked, reranker)
        classifier = train_answerable(examples)
        measured = {
            part: trade_offs([e for e in examples if e.part == part], classifier, THRESHOLDS)
            for part in PARTS
        }
        by_set = {
            (name, part): trade_offs(
                [e for e in examples if e.set_name == name and e.part == part],
                classifier,
                THRESHOLDS,
            )
            for name in names
            for part in PARTS
        }
        chosen = choose_threshold(measured["tune"])
        self._trade_off_report(examples, classifier, names, chosen.threshold)
        classifier = _with_about(
            classifier,
            trained_on=_trained_on(asked),
            threshold=chosen.threshold,
            trade_off=[
                {
                    "threshold": tune.threshold,
                    "tune": _rates(tune),
                    "confirm": _rates(confirm),
                    "sets": {
                        name: {part: _rates(by_set[name, part][i]) for part in PARTS}
                        for name in names
                    },
                }
                for i, (tune, confirm) in enumerate(
                    zip(measured["tune"], measured["confirm"], strict=True)
                )
            ],
        )
        out: Path = options["out"]
        reranker.save(out / RERANKER_PATH.name)
        classifier.save(out / ANSWERABLE_PATH.name)
        self.stdout.write(
            f"Wrote {out / RERANKER_PATH.name} and {out / ANSWERABLE_PATH.name} "
            f"(answerable threshold chosen on the tuning part: {chosen.threshold:.2f})."
        )

    def _recall_table(
        self, asked: list[Asked], reranker: LinearModel, names: list[str]
    ) -> dict[str, Any]:
        figures: dict[str, Any] = {}
        self.stdout.write("Doc-level recall (fused candidates, before and after reranking):")
        self.stdout.write(
            "set          part     questions  order     "
            + "  ".join(f"r@{k:<3}" for k in KS)
            + "  MRR"
        )
        for name in names:
            for part in PARTS:
                of = [a for a in asked if a.set_name == name and a.part == part]
                for label, model in (("fused", None), ("reranked", reranker)):
                    got = doc_recall(of, model, KS)
                    figures.setdefault(name, {}).setdefault(part, {})[label] = {
                        "questions": got.questions,
                        **{f"recall@{k}": round(got.recall_at[k], 4) for k in KS},
                        "mrr": round(got.mrr, 4),
                    }
                    self.stdout.write(
                        f"{name:<12} {part:<8} {got.questions:>9}  {label:<8}  "
                        + "  ".join(f"{got.recall_at[k]:.3f}" for k in KS)
                        + f"  {got.mrr:.3f}"
                    )
        return figures

    def _trade_off_report(
        self,
        examples: list[AnswerableExample],
        classifier: LinearModel,
        names: list[str],
        threshold: float,
    ) -> None:
        self.stdout.write(f"No-answer classifier at threshold {threshold:.2f}:")
        for name in names:
            for part in PARTS:
                of = [e for e in examples if e.set_name == name and e.part == part]
                if not of:
                    continue
                (row,) = trade_offs(of, classifier, [threshold])
                self.stdout.write(
                    f"{name:<12} {part:<8} refused {row.refused:.3f} of unanswerable, "
                    f"answered {row.answered:.3f} of answerable ({len(of) // 2} questions)"
                )


def _rates(row: TradeOff) -> dict[str, float]:
    return {"refused": round(row.refused, 4), "answered": round(row.answered, 4)}


def _trained_on(asked: list[Asked]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for one in asked:
        if one.part == "tune":
            counts[one.set_name] = counts.get(one.set_name, 0) + 1
    return dict(sorted(counts.items()))


def _with_about(model: LinearModel, **about: Any) -> LinearModel:
    return dataclasses.replace(model, about={**model.about, **about})
