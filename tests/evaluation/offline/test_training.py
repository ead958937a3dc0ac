"""The reranker and the no-answer classifier learn from small data built here, and generalise to
questions they were not fitted on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatbot.retrieval.answerable import ANSWERABLE_FEATURES, answerable_features
from chatbot.retrieval.rerank import RERANK_FEATURES, BadModel, LinearModel, load_model
from chatbot.retrieval.search import SearchHit
from chatbot.retrieval.terms import idf
from evaluation.offline.data import Question
from evaluation.offline.training import (
    Asked,
    TradeOff,
    answerable_examples,
    choose_threshold,
    doc_recall,
    trade_offs,
    train_answerable,
    train_reranker,
)

TOPICS = [
    "measles outbreak vaccination coverage",
    "tuberculosis prevalence survey province",
    "hepatitis virus infection receptor",
    "encephalitis virus detection array",
    "bovine coronavirus genome sequence",
    "influenza hospital surveillance season",
    "malaria parasite drug resistance",
    "dengue mosquito transmission model",
]


def _hit(
    n: int, doc: str, *, dense: int | None, sparse: int | None, text: str, terms: dict[str, int]
) -> SearchHit:
    return SearchHit(
        chunk_id=n, score=0.0, dense_rank=dense, sparse_rank=sparse,
        similarity=0.6 - 0.01 * (dense or 30), text_rank=0.5 / (sparse or 30) if sparse else None,
        heading=f"Article {doc}", text=text, document_id=hash(doc) % 10_000, external_id=doc,
        title=doc, url="", collection_id=1, collection_name="KB", term_counts=terms, lexemes=40,
    )  # fmt: skip


def _asked(number: int, part: str) -> Asked:
    """A question whose fused order puts a same-topic distractor first: the distractor leads the
    dense leg but holds only the question's common word, while the gold passage leads the
    full-text leg and holds its rare word too (how specific questions over long articles go)."""
    topic = TOPICS[number % len(TOPICS)]
    common, rare = topic.split()[0], f"term{number}"
    query = f"{topic} {rare}"
    gold, other = f"gold-{number}", f"other-{number}"
    hits = [
        _hit(1, other, dense=1, sparse=None, text=f"background about {common}", terms={common: 1}),
        _hit(2, gold, dense=4, sparse=1, text=f"{topic} {rare} found", terms={common: 1, rare: 2}),
    ]
    for i in range(3, 12):
        hits.append(
            _hit(i, f"noise-{i}", dense=i + 2, sparse=i, text=f"unrelated {i}", terms={common: 1})
        )
    weights = {common: idf(9, 100), rare: idf(1, 100)}
    question = Question(f"q{number}", query, frozenset({gold}))
    without = tuple(h for h in hits if h.external_id != gold)
    return Asked("synthetic", part, question, tuple(hits), weights, without)


@pytest.fixture
def asked() -> list[Asked]:
    return [_asked(n, "tune") for n in range(24)] + [_asked(n, "confirm") for n in range(24, 40)]


def test_the_reranker_learns_which_signals_find_the_answer(asked: list[Asked]) -> None:
    model = train_reranker(asked)
    confirm = [a for a in asked if a.part == "confirm"]

    assert doc_recall(confirm, None).recall_at[1] == 0.0, "fused order puts the distractor first"
    assert doc_recall(confirm, model).recall_at[1] == 1.0, "reranked: the gold passage leads"
    assert model.features == RERANK_FEATURES


def test_it_is_fitted_on_the_tuning_part_only(asked: list[Asked]) -> None:
    only_tune = [a for a in asked if a.part == "tune"]
    assert train_reranker(asked) == train_reranker(only_tune), "confirming questions never fit"


def test_the_classifier_tells_answerable_context_from_a_missing_document(
    asked: list[Asked],
) -> None:
    reranker = train_reranker(asked)
    examples = answerable_examples(asked, reranker)
    classifier = train_answerable(examples)
    assert classifier.features == ANSWERABLE_FEATURES

    chosen = choose_threshold(
        trade_offs([e for e in examples if e.part == "tune"], classifier, [0.3, 0.5, 0.7])
    )
    (confirm,) = trade_offs(
        [e for e in examples if e.part == "confirm"], classifier, [chosen.threshold]
    )
    assert confirm.refused >= 0.9 and confirm.answered >= 0.9, confirm


def test_the_answerable_features_read_the_context() -> None:
    weights = {"measl": idf(1, 50), "vaccin": idf(20, 50)}
    gold = _hit(
        1, "a", dense=1, sparse=1, text="measles outbreak vaccination coverage rates",
        terms={"measl": 1, "vaccin": 1},
    )  # fmt: skip
    other = _hit(2, "b", dense=2, sparse=None, text="vaccination", terms={"vaccin": 1})
    question = "measles vaccination coverage?"
    full = answerable_features(question, weights, [gold, other], [3.0, -1.0])
    missing = answerable_features(question, weights, [other], [-1.0])
    empty = answerable_features(question, weights, [], [])

    assert full["top_coverage"] == 1.0 and full["legs_agree"] == 1.0
    assert full["rerank_lead"] == 4.0 and full["missing_rarity"] == 0.0
    assert missing["missing_rarity"] == 1.0, "the rarest word is the one missing"
    assert missing["context_idf_coverage"] < missing["context_coverage"], (
        "a common word weighs less"
    )
    assert empty["top_coverage"] == 0.0 and empty["top_rerank"] < full["top_rerank"]


def test_choosing_a_threshold_favours_the_weaker_of_the_two_goals() -> None:
    rows = [TradeOff(0.3, 0.6, 0.99), TradeOff(0.5, 0.85, 0.9), TradeOff(0.7, 0.95, 0.7)]
    assert choose_threshold(rows).threshold == 0.5


def test_a_model_file_round_trips_and_a_wrong_one_is_refused(
    asked: list[Asked], tmp_path: Path
) -> None:
    model = train_reranker(asked)
    path = tmp_path / "reranker.json"
    model.save(path)
    loaded = load_model(path, expected=RERANK_FEATURES)
    assert loaded is not None
    assert loaded.to_json() == model.to_json()

    data = json.loads(path.read_text())
    data["features"] = data["features"][:-1]
    with pytest.raises(BadModel, match="features"):
        LinearModel.from_json(data, expected=RERANK_FEATURES)
    path.write_text("{not json")
    assert load_model(path, expected=RERANK_FEATURES) is None, "an unreadable file: no stage"
    assert load_model(tmp_path / "missing.json", expected=RERANK_FEATURES) is None
