"""Retrieval evaluation: doc-level recall@k, MRR and latency for the dense leg, the sparse leg,
their fusion and the fusion reranked (what search returns), side by side, so we see whether
fusion and reranking beat the best single leg. Without a shipped reranker there is no reranked row.

A search returns chunks; a question is answered by documents. Each ranking is the chunk list
(`candidates` deep) reduced to its documents in first-seen order. The "api" row is what
POST /api/search returns: the reranked passages with at most `SEARCH_PER_DOCUMENT` of one document
among the first k (`per_document_first`), counted as passages: recall@5 there is the share of
questions whose document is among the first 5 passages a caller gets.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.contrib.auth.models import User

from chatbot.retrieval.rerank import reranker
from chatbot.retrieval.search import (
    DEFAULT_CANDIDATES,
    DEFAULT_DENSE_WEIGHT,
    DEFAULT_SPARSE_WEIGHT,
    DEFAULT_TEXT_WEIGHTS,
    SEARCH_PER_DOCUMENT,
    hybrid_search,
    per_document_first,
)
from evaluation.offline.data import Question

MODES = ("dense", "sparse", "fused", "reranked", "api")


@dataclass
class ModeReport:
    mode: str
    ks: tuple[int, ...]
    hits_at: dict[int, int] = field(default_factory=dict)
    reciprocal_ranks: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def questions(self) -> int:
        return len(self.reciprocal_ranks)

    def add(self, ranked_docs: list[str], relevant: frozenset[str], latency_ms: float) -> None:
        first = next((i for i, doc in enumerate(ranked_docs, 1) if doc in relevant), None)
        for k in self.ks:
            self.hits_at[k] = self.hits_at.get(k, 0) + int(first is not None and first <= k)
        # MRR is cut at the deepest k asked for, like recall.
        self.reciprocal_ranks.append(1 / first if first and first <= max(self.ks) else 0.0)
        self.latencies_ms.append(latency_ms)

    def recall(self, k: int) -> float:
        return self.hits_at.get(k, 0) / self.questions if self.questions else 0.0

    def mrr(self) -> float:
        return statistics.fmean(self.reciprocal_ranks) if self.reciprocal_ranks else 0.0

    def merged(self, other: ModeReport) -> ModeReport:
        """Both reports' questions as one report (two parts of a set, the whole set)."""
        return ModeReport(
            self.mode,
            self.ks,
            {k: self.hits_at.get(k, 0) + other.hits_at.get(k, 0) for k in self.ks},
            self.reciprocal_ranks + other.reciprocal_ranks,
            self.latencies_ms + other.latencies_ms,
        )

    def latency(self, quantile: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(quantile * (len(ordered) - 1)))]


@dataclass(frozen=True)
class Levers:
    """The general knobs; never tuned per question."""

    candidates: int = DEFAULT_CANDIDATES
    dense_weight: float = DEFAULT_DENSE_WEIGHT
    sparse_weight: float = DEFAULT_SPARSE_WEIGHT
    text_weights: tuple[float, float, float, float] = DEFAULT_TEXT_WEIGHTS

    def weights(self, mode: str) -> tuple[float, float]:
        return {
            "dense": (1.0, 0.0),
            "sparse": (0.0, 1.0),
            "fused": (self.dense_weight, self.sparse_weight),
            "reranked": (self.dense_weight, self.sparse_weight),
        }[mode]


def ranked_documents(external_ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(external_ids))


def evaluate(
    *,
    user: User,
    questions: list[Question],
    collection_id: int,
    ks: tuple[int, ...] = (1, 5, 10),
    levers: Levers = Levers(),
    progress: Callable[[int], None] | None = None,
) -> dict[str, ModeReport]:
    modes = MODES[:-1] if reranker() is not None else MODES[:-2]
    reports = {mode: ModeReport(mode, ks) for mode in modes}
    if "reranked" in modes:
        reports["api"] = ModeReport("api", ks)
    depth = max(levers.candidates, max(ks))
    for number, question in enumerate(questions, start=1):
        for mode in modes:
            dense_weight, sparse_weight = levers.weights(mode)
            result = hybrid_search(
                user=user,
                query=question.text,
                k=depth,
                collection_ids=[collection_id],
                candidates=depth,
                dense_weight=dense_weight,
                sparse_weight=sparse_weight,
                text_weights=levers.text_weights,
                rerank=mode == "reranked",
            )
            docs = ranked_documents(hit.external_id for hit in result.hits)
            reports[mode].add(docs, question.relevant, result.duration_ms)
            if mode == "reranked":
                # One passage a slot: a document counts once per passage of it.
                listed = per_document_first(result.hits, SEARCH_PER_DOCUMENT)
                passages = [hit.external_id for hit in listed]
                reports["api"].add(passages, question.relevant, result.duration_ms)
        if progress is not None:
            progress(number)
    return reports


def format_table(reports: dict[str, ModeReport]) -> str:
    first = next(iter(reports.values()))
    ks = first.ks
    header = ["mode", *[f"recall@{k}" for k in ks], f"MRR@{max(ks)}", "p50 ms", "p95 ms"]
    rows = [header]
    for report in reports.values():
        rows.append(
            [
                report.mode,
                *[f"{report.recall(k):.3f}" for k in ks],
                f"{report.mrr():.3f}",
                f"{report.latency(0.5):.1f}",
                f"{report.latency(0.95):.1f}",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    )
