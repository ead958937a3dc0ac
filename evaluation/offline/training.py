"""Training the retrieval models on the tuning parts of the evaluation sets, and measuring them on
both parts: the reranker (`chatbot.retrieval.rerank`) and the no-answer classifier
(`chatbot.retrieval.answerable`).

Each question is asked not reranked, for its rerank pool (each leg's best `RERANK_LEG_DEPTH`
passages, `rerank_pool`), with its documents and without them; everything else is computed from
those candidates:
- reranker examples: each candidate, labelled 1 when its document answers the question;
- no-answer examples: the question as asked (its document is in the knowledge base: answerable),
  and asked again with its documents excluded from the search (as if they had never been
  ingested: unanswerable; every other passage moves up, as it would). Dropping the document's
  passages from the first list instead made unanswerable questions look far easier than they
  are (the rest kept their lower ranks): a classifier trained so refused 0.68 of them end to
  end where it expected 0.90. `eval_answers`, which really leaves documents out, confirms.

Only tuning questions are fitted; the confirming part is only measured, so its figures say
whether a model generalises. A seeded, deterministic fit: the same candidates give the same file.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from django.contrib.auth.models import User
from sklearn.linear_model import LogisticRegression

from chatbot.models import Document
from chatbot.retrieval.answerable import ANSWERABLE_FEATURES, answerable_features
from chatbot.retrieval.rerank import (
    RERANK_FEATURES,
    RERANK_LEG_DEPTH,
    LinearModel,
    candidate_features,
    probability,
    rerank_order,
    rerank_pool,
)
from chatbot.retrieval.search import SearchHit, hybrid_search
from evaluation.offline.data import Question

# The answer's context: the first K reranked passages (Models → Answers & grounding's default).
CONTEXT_K = 5
# L2 regularisation of both fits (sklearn's C); the default, not tuned.
REGULARISATION_C = 1.0


@dataclass(frozen=True)
class Asked:
    """One question's fused candidates, from one set and one part."""

    set_name: str
    part: str
    question: Question
    hits: tuple[SearchHit, ...]
    weights: dict[str, float]  # the IDF of the question's lexemes (SearchResult.term_weights)
    # The candidates of the same search with the question's documents left out, as if they had
    # never been ingested: every other passage moves up, as it would in such a knowledge base.
    hits_without: tuple[SearchHit, ...] = ()

    def relevant(self, hit: SearchHit) -> bool:
        return hit.external_id in self.question.relevant


def ask_all(
    *,
    user: User,
    collection_id: int,
    set_name: str,
    parts: dict[str, list[Question]],
    progress: Callable[[int], None] | None = None,
) -> list[Asked]:
    asked: list[Asked] = []
    documents = dict(
        Document.objects.filter(collection_id=collection_id).values_list("external_id", "pk")
    )
    for part, questions in parts.items():
        for question in questions:
            found, without = (
                hybrid_search(
                    user=user,
                    query=question.text,
                    k=1,
                    collection_ids=[collection_id],
                    rerank=False,
                    exclude_documents=excluded,
                    leg_depth=RERANK_LEG_DEPTH,
                )
                for excluded in (
                    None,
                    [documents[d] for d in question.relevant if d in documents] or None,
                )
            )
            asked.append(
                Asked(
                    set_name,
                    part,
                    question,
                    tuple(rerank_pool(found.hits)),
                    found.term_weights,
                    tuple(rerank_pool(without.hits)),
                )
            )
            if progress is not None:
                progress(len(asked))
    return asked


def fit_linear(
    rows: Sequence[dict[str, float]], labels: Sequence[int], features: Sequence[str]
) -> LinearModel:
    matrix = np.array([[row[f] for f in features] for row in rows], dtype=float)
    target = np.array(labels, dtype=int)
    if len(set(target.tolist())) < 2:
        raise ValueError("Training needs examples of both kinds (relevant and not).")
    mean = matrix.mean(axis=0)
    scale = matrix.std(axis=0)
    scale[scale < 1e-6] = 1.0  # a (nearly) constant feature: left unscaled
    fit = LogisticRegression(C=REGULARISATION_C, max_iter=2000, class_weight="balanced")
    fit.fit((matrix - mean) / scale, target)
    return LinearModel(
        features=tuple(features),
        mean=tuple(float(x) for x in mean),
        scale=tuple(float(x) for x in scale),
        coef=tuple(float(x) for x in fit.coef_[0]),
        intercept=float(fit.intercept_[0]),
    )


# --- the reranker --------------------------------------------------------------------------------


def train_reranker(asked: Sequence[Asked]) -> LinearModel:
    rows: list[dict[str, float]] = []
    labels: list[int] = []
    for one in asked:
        if one.part != "tune" or not one.hits:
            continue
        rows.extend(candidate_features(one.weights, one.hits))
        labels.extend(int(one.relevant(h)) for h in one.hits)
    return fit_linear(rows, labels, RERANK_FEATURES)


def reranked(
    one: Asked, model: LinearModel | None, hits: Sequence[SearchHit] | None = None
) -> tuple[list[SearchHit], list[float]]:
    """`hits` (default: the question's candidates) in the model's order; None: fused order."""
    hits = one.hits if hits is None else hits
    if model is None or not hits:
        return list(hits), [0.0] * len(hits)
    return rerank_order(one.weights, hits, model)


@dataclass(frozen=True)
class RecallFigures:
    questions: int
    recall_at: dict[int, float]
    mrr: float


def doc_recall(
    asked: Sequence[Asked], model: LinearModel | None, ks: Sequence[int] = (1, 5, 10)
) -> RecallFigures:
    hits_at = dict.fromkeys(ks, 0)
    reciprocal: list[float] = []
    for one in asked:
        ordered, _ = reranked(one, model)
        docs = list(dict.fromkeys(h.external_id for h in ordered))
        first = next((i for i, d in enumerate(docs, 1) if d in one.question.relevant), None)
        for k in ks:
            hits_at[k] += int(first is not None and first <= k)
        reciprocal.append(1 / first if first and first <= max(ks) else 0.0)
    n = len(asked)
    return RecallFigures(
        n,
        {k: hits_at[k] / n if n else 0.0 for k in ks},
        statistics.fmean(reciprocal) if reciprocal else 0.0,
    )


# --- the no-answer classifier --------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerableExample:
    set_name: str
    part: str
    answerable: int
    row: dict[str, float]


def answerable_examples(asked: Sequence[Asked], reranker: LinearModel) -> list[AnswerableExample]:
    examples: list[AnswerableExample] = []
    for one in asked:
        for answerable, hits in ((1, one.hits), (0, one.hits_without)):
            ordered, scores = reranked(one, reranker, hits)
            row = answerable_features(
                one.question.text, one.weights, ordered[:CONTEXT_K], scores[:CONTEXT_K]
            )
            examples.append(AnswerableExample(one.set_name, one.part, answerable, row))
    return examples


def train_answerable(examples: Sequence[AnswerableExample]) -> LinearModel:
    tune = [e for e in examples if e.part == "tune"]
    return fit_linear([e.row for e in tune], [e.answerable for e in tune], ANSWERABLE_FEATURES)


@dataclass(frozen=True)
class TradeOff:
    threshold: float
    refused: float  # share of unanswerable examples refused
    answered: float  # share of answerable examples let through

    def worst(self) -> float:
        return min(self.refused, self.answered)


def trade_offs(
    examples: Sequence[AnswerableExample], model: LinearModel, thresholds: Sequence[float]
) -> list[TradeOff]:
    scored = [(e.answerable, probability(model.score(e.row))) for e in examples]
    yes = [p for a, p in scored if a]
    no = [p for a, p in scored if not a]
    return [
        TradeOff(
            t,
            sum(p < t for p in no) / len(no) if no else 0.0,
            sum(p >= t for p in yes) / len(yes) if yes else 0.0,
        )
        for t in thresholds
    ]


def choose_threshold(tune: Sequence[TradeOff]) -> TradeOff:
    """The tuning part's threshold with the best worse-of-the-two rate (refused, answered): both
    goals are floors, so the weaker one decides. Ties go to the lower threshold (answer more)."""
    return max(tune, key=lambda t: (round(t.worst(), 6), -t.threshold))
