"""Answer evaluation: grounded answers from the real pipeline against gold answers, and how often
the assistant refuses questions its knowledge base cannot answer.

Part of the documents is held out (never ingested); questions about the ingested ones measure
answers (token F1, containment, citations), questions about the held-out ones measure refusals.
Each question goes through what a chat turn does (`ground`, `route_choose`, `prompt_with_context`,
`astream_text`; see `evaluation.pipeline`) but no Turn is written and the run's
settings are passed to retrieval rather than saved, so production figures and chat stay untouched.
Retrieval runs as a scratch user whose only group sees only the scratch collection.

Within one part of a split set (`--splits`, `--part`) the design is kept: the questions asked are
the part's, and the held-out articles are drawn from the part's own articles (for a set split by
document; from all of them for a set split by question), `holdout` of them. Every other document
of the set, the other part's articles included, is ingested: they are distractors whose questions
are never asked, so no figure of one part depends on the other's questions, and both parts face
a knowledge base of about the same size.
"""

from __future__ import annotations

import asyncio
import statistics
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from typing import Any

from django.contrib.auth.models import User

from chatbot.agent.grounding import cited_numbers
from chatbot.models import AssistantSettings
from evaluation import metrics
from evaluation.datasets.services import run_config
from evaluation.offline.data import GoldQuestion
from evaluation.offline.scratch import Scratch, scratch_knowledge_base
from evaluation.pipeline import pipeline_answer

# --- the evaluation set --------------------------------------------------------------------------


def holdout_ids(doc_ids: list[str], fraction: float) -> set[str]:
    """`fraction` of the documents, spread evenly over their sorted ids; at least one stays."""
    ordered = sorted(doc_ids)
    count = min(round(len(ordered) * fraction), len(ordered) - 1)
    if count <= 0:
        return set()
    return {ordered[int((i + 0.5) * len(ordered) / count)] for i in range(count)}


def interleave(questions: list[GoldQuestion], limit: int) -> list[GoldQuestion]:
    """Up to `limit` questions taken in turn from each document (sorted ids), so a small limit
    still covers many documents rather than the first one's questions."""
    by_doc: dict[str, list[GoldQuestion]] = defaultdict(list)
    for question in questions:
        by_doc[question.doc_id].append(question)
    queues = [by_doc[doc] for doc in sorted(by_doc)]
    picked: list[GoldQuestion] = []
    depth = 0
    while len(picked) < limit and any(depth < len(q) for q in queues):
        picked.extend(q[depth] for q in queues if depth < len(q))
        depth += 1
    return picked[:limit]


# --- settings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSettings:
    grounding: str
    k: int
    min_similarity: float
    min_coverage: float = 0.0
    min_answerable: float = 0.0

    def config(self) -> AssistantSettings:
        """The settings `ground` uses for this run, never saved: production chat is untouched."""
        return run_config(asdict(self))


# --- asking --------------------------------------------------------------------------------------


@dataclass
class Outcome:
    id: str
    answerable: bool
    question: str
    gold: list[str]
    doc_id: str
    answer: str = ""
    no_answer: bool = False  # retrieval found nothing relevant enough; the model was not asked
    refused: bool = False  # no_answer, or the model's words are a refusal
    error: str = ""
    f1: float = 0.0
    containment: float = 0.0
    contains: bool = False
    context_docs: list[str] = field(default_factory=list)
    cited_doc: str | None = None
    citation_ok: bool = False
    latency_ms: float = 0.0

    @property
    def answered(self) -> bool:
        return not self.refused and not self.error


def answer_one(
    *,
    user: User,
    question: GoldQuestion,
    answerable: bool,
    endpoint_name: str | None,
    runner: asyncio.Runner,
    config: AssistantSettings | None = None,
) -> Outcome:
    outcome = Outcome(
        id=question.id,
        answerable=answerable,
        question=question.text,
        gold=list(question.answers),
        doc_id=question.doc_id,
    )
    asked = pipeline_answer(
        user=user,
        question=question.text,
        endpoint_name=endpoint_name,
        runner=runner,
        config=config,
    )
    outcome.answer, outcome.no_answer, outcome.error = asked.answer, asked.no_answer, asked.error
    outcome.latency_ms = asked.latency_ms
    hits = asked.hits
    outcome.context_docs = [hit.external_id for hit in hits]
    outcome.refused = outcome.no_answer or (
        not outcome.error and metrics.is_refusal(outcome.answer)
    )
    if outcome.answered:
        text = metrics.strip_citations(outcome.answer)
        outcome.f1 = metrics.max_f1(text, question.answers)
        outcome.containment = metrics.containment(text, question.answers)
        outcome.contains = outcome.containment >= metrics.CONTAINS_AT
        cited = cited_numbers(outcome.answer, available=len(hits))
        # The best-ranked source it cites; citing nothing, the source it was given first.
        number = min(cited) if cited else 1
        if hits:
            outcome.cited_doc = hits[number - 1].external_id
            outcome.citation_ok = outcome.cited_doc == question.doc_id
    return outcome


# --- the run -------------------------------------------------------------------------------------


@dataclass
class Report:
    endpoint: str
    settings: RunSettings
    holdout: float
    documents_ingested: int
    chunks: int
    held_out: list[str]
    skipped_questions: int  # their doc_id is not in the documents file
    outcomes: list[Outcome]
    part: str | None = None  # of a split set: tune or confirm; None = every question
    split_set: str | None = None

    def answerable(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.answerable]

    def unanswerable(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.answerable]


Progress = Callable[[int, int, Outcome], None]


def evaluate(
    *,
    documents: dict[str, dict[str, Any]],
    questions: list[GoldQuestion],
    run: RunSettings,
    endpoint_name: str,
    holdout: float = 0.3,
    limit: int = 40,
    articles: Collection[str] | None = None,
    part: str | None = None,
    split_set: str | None = None,
    on_ingested: Callable[[Scratch], None] | None = None,
    progress: Progress | None = None,
) -> Report:
    """`articles`: the documents the held-out ones are drawn from (default: all of them)."""
    pool = list(documents) if articles is None else [d for d in documents if d in articles]
    held_out = holdout_ids(pool, holdout)
    known = [q for q in questions if q.doc_id in documents]
    answerable = interleave([q for q in known if q.doc_id not in held_out], limit)
    unanswerable = interleave([q for q in known if q.doc_id in held_out], limit)
    asked = [(q, True) for q in answerable] + [(q, False) for q in unanswerable]
    kept = [doc for doc_id, doc in documents.items() if doc_id not in held_out]
    outcomes: list[Outcome] = []
    with scratch_knowledge_base(kept, purpose="eval_answers") as scratch:
        if on_ingested is not None:
            on_ingested(scratch)
        config = run.config()
        with asyncio.Runner() as runner:
            for number, (question, is_answerable) in enumerate(asked, start=1):
                outcome = answer_one(
                    user=scratch.user,
                    question=question,
                    answerable=is_answerable,
                    endpoint_name=endpoint_name,
                    runner=runner,
                    config=config,
                )
                outcomes.append(outcome)
                if progress is not None:
                    progress(number, len(asked), outcome)
    return Report(
        endpoint=endpoint_name,
        settings=run,
        holdout=holdout,
        documents_ingested=scratch.documents,
        chunks=scratch.chunks,
        held_out=sorted(held_out),
        skipped_questions=len(questions) - len(known),
        outcomes=outcomes,
        part=part,
        split_set=split_set,
    )


# --- figures -------------------------------------------------------------------------------------


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def _share(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def figures(report: Report) -> dict[str, Any]:
    """Every figure of the run. F1 and containment are means over all answerable questions
    (a refusal or an error scores 0); citation accuracy is over the answered ones."""
    answerable, unanswerable = report.answerable(), report.unanswerable()
    answered = [o for o in answerable if o.answered]
    return {
        "endpoint": report.endpoint,
        "grounding": report.settings.grounding,
        "k": report.settings.k,
        "min_similarity": report.settings.min_similarity,
        "min_coverage": report.settings.min_coverage,
        "min_answerable": report.settings.min_answerable,
        "holdout": report.holdout,
        "documents_ingested": report.documents_ingested,
        "chunks": report.chunks,
        "documents_held_out": report.held_out,
        "skipped_questions": report.skipped_questions,
        "part": report.part,
        "split_set": report.split_set,
        "answerable": {
            "n": len(answerable),
            "mean_f1": _mean([o.f1 for o in answerable]),
            "mean_containment": _mean([o.containment for o in answerable]),
            "contains_rate": _share([o.contains for o in answerable]),
            "answered_rate": _share([o.answered for o in answerable]),
            "citation_accuracy": _share([o.citation_ok for o in answered]),
            "mean_latency_ms": _mean([o.latency_ms for o in answerable]),
            "errors": sum(bool(o.error) for o in answerable),
        },
        "unanswerable": {
            "n": len(unanswerable),
            "refusal_rate": _share([o.refused for o in unanswerable]),
            "refused_by_retrieval": _share([o.no_answer for o in unanswerable]),
            "refused_by_model": _share([o.refused and not o.no_answer for o in unanswerable]),
            "mean_latency_ms": _mean([o.latency_ms for o in unanswerable]),
            "errors": sum(bool(o.error) for o in unanswerable),
        },
        "questions": [
            {**asdict(o), "latency_ms": round(o.latency_ms, 1), "f1": round(o.f1, 4)}
            for o in report.outcomes
        ],
    }


def _cell(value: float | int | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def format_table(data: dict[str, Any]) -> str:
    a, u = data["answerable"], data["unanswerable"]
    header = (
        f"endpoint {data['endpoint']}, grounding {data['grounding']}, k={data['k']}; "
        f"{data['documents_ingested']} documents ingested ({data['chunks']} chunks), "
        f"{len(data['documents_held_out'])} held out"
    )
    if data.get("part"):
        header += f"; part {data['part']} of set {data['split_set']}"
    rows = [
        ("answerable questions", _cell(a["n"])),
        ("  mean token F1", _cell(a["mean_f1"])),
        ("  mean containment", _cell(a["mean_containment"])),
        (f"  contains rate (>= {metrics.CONTAINS_AT})", _cell(a["contains_rate"])),
        ("  answered rate (not refused)", _cell(a["answered_rate"])),
        ("  citation accuracy", _cell(a["citation_accuracy"])),
        ("  mean latency ms", _cell(a["mean_latency_ms"], 1)),
        ("  model errors", _cell(a["errors"])),
        ("unanswerable questions", _cell(u["n"])),
        ("  refusal rate", _cell(u["refusal_rate"])),
        ("    by retrieval (no answer)", _cell(u["refused_by_retrieval"])),
        ("    by the model's words", _cell(u["refused_by_model"])),
        ("  mean latency ms", _cell(u["mean_latency_ms"], 1)),
        ("  model errors", _cell(u["errors"])),
        ("no-answer threshold (min similarity)", _cell(data["min_similarity"], 2)),
        ("no-answer threshold (min coverage)", _cell(data["min_coverage"], 2)),
        ("no-answer threshold (answerable)", _cell(data.get("min_answerable"), 2)),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join([header, *(f"{label.ljust(width)}  {value}" for label, value in rows)])
