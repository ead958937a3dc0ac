"""The no-answer classifier: can the passages retrieved for a question answer it?

A passage on the same topic is similar to the question without answering it, so no single
similarity threshold separates "the knowledge base has this" from "it doesn't" on documents
nobody tuned on. The classifier reads several signals of the retrieved context together: the
reranker's confidence in its best passage and its lead over the next, the best similarity, how
much of the question the best passage and the whole context contain (plainly and weighted by
how rare each word is), how rare the rarest word no passage holds is, and whether the dense and
full-text legs agree on the best document. A logistic regression over them, trained by
`manage.py train_retrieval` on the tuning parts of the evaluation sets, gives the probability that
the question is answerable; below the admins' threshold (Models → Answers & grounding) the
assistant says it doesn't know and offers a human.

The training command also writes the measured trade-off (share of unanswerable questions refused
and of answerable ones answered, per threshold, on the tuning and the confirming part) into the
file's `about`, which the settings page shows beside the threshold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatbot.retrieval.rerank import WEIGHTS_DIR, LinearModel, load_model, probability
from chatbot.retrieval.terms import weighted_coverage
from chatbot.retrieval.words import content_words, coverage

if TYPE_CHECKING:
    from chatbot.retrieval.search import SearchHit

ANSWERABLE_PATH = WEIGHTS_DIR / "answerable.json"
# The thresholds the training command measures (and the console lists).
THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))
# The rerank score given to an empty context, and the lead of a single passage.
_NO_SCORE = -10.0

ANSWERABLE_FEATURES = (
    "top_rerank",  # the reranker's log-odds for the best passage
    "rerank_lead",  # ... minus the second's
    "top_similarity",
    "top_coverage",  # share of the question's words the best passage holds
    "context_coverage",  # ... that the whole context holds
    "legs_agree",  # the dense and full-text legs' best passages come from one document
    "query_words",  # the question's length in content words (up to 20), over 20
    "top_idf_coverage",  # IDF-weighted share of the question's lexemes the best passage holds
    "context_idf_coverage",  # ... the whole context holds
    "missing_rarity",  # IDF of the rarest lexeme no passage holds, over the largest IDF possible
)


@lru_cache(maxsize=4)
def answerable_model(path: Path = ANSWERABLE_PATH) -> LinearModel | None:
    return load_model(path, expected=ANSWERABLE_FEATURES)


def _coverage(question: str, hits: Sequence[SearchHit]) -> float:
    return coverage(question, (f"{hit.heading} {hit.text}" for hit in hits))


def _held(hits: Sequence[SearchHit]) -> set[str]:
    return {lexeme for hit in hits for lexeme, n in hit.term_counts.items() if n > 0}


def answerable_features(
    question: str,
    weights: Mapping[str, float],
    hits: Sequence[SearchHit],
    scores: Sequence[float],
) -> dict[str, float]:
    """The features of a question's context: `hits` best first, `scores` their rerank scores,
    `weights` the IDF of the question's lexemes (`SearchResult.term_weights`)."""
    top = scores[0] if scores else _NO_SCORE
    dense_best = min(
        (h for h in hits if h.dense_rank), key=lambda h: h.dense_rank or 0, default=None
    )
    sparse_best = min(
        (h for h in hits if h.sparse_rank), key=lambda h: h.sparse_rank or 0, default=None
    )
    agree = (
        dense_best is not None
        and sparse_best is not None
        and dense_best.document_id == sparse_best.document_id
    )
    held = _held(hits)
    rarest = max((w for lexeme, w in weights.items() if lexeme not in held), default=0.0)
    most = max(weights.values(), default=0.0)
    return {
        "top_rerank": top,
        "rerank_lead": top - scores[1] if len(scores) > 1 else 0.0,
        "top_similarity": max((h.similarity or 0.0 for h in hits), default=0.0),
        "top_coverage": _coverage(question, hits[:1]),
        "context_coverage": _coverage(question, hits),
        "legs_agree": float(agree),
        "query_words": min(len(set(content_words(question))), 20) / 20,
        "top_idf_coverage": weighted_coverage(weights, _held(hits[:1])) if hits else 0.0,
        "context_idf_coverage": weighted_coverage(weights, held) if hits else 0.0,
        "missing_rarity": rarest / most if most > 0 else 0.0,
    }


def answerable_probability(
    model: LinearModel,
    question: str,
    weights: Mapping[str, float],
    hits: Sequence[SearchHit],
    scores: Sequence[float],
) -> float:
    return probability(model.score(answerable_features(question, weights, hits, scores)))


def trade_off_table(model: LinearModel) -> list[dict[str, Any]]:
    """The measured rows the training command stored: threshold, then refused and answered
    shares on the tuning and the confirming part (all sets, and under "sets" each set); [] for a
    model trained elsewhere."""
    rows = model.about.get("trade_off")
    return [row for row in rows if isinstance(row, dict)] if isinstance(rows, list) else []


def trade_off_by_set(model: LinearModel) -> tuple[list[str], list[dict[str, Any]]]:
    """The trade-off as a table: the groups (each evaluation set, or "all sets" for a file
    without per-set figures) and, per threshold, four shares a group: tuning refused and
    answered, confirming refused and answered."""
    rows = trade_off_table(model)
    names = sorted({name for row in rows for name in (row.get("sets") or {})})
    table = []
    for row in rows:
        groups = [row["sets"][n] for n in names] if names and row.get("sets") else [row]
        cells = [
            group.get(part, {}).get(rate)
            for group in groups
            for part in ("tune", "confirm")
            for rate in ("refused", "answered")
        ]
        table.append({"threshold": row.get("threshold"), "cells": cells})
    return (names or ["all sets"]), table
