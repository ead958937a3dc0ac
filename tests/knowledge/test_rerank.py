"""The rerank stage and the term statistics behind it, in a real search."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from chatbot.models import Document, TermStat
from chatbot.retrieval.rerank import (
    RERANK_FEATURES,
    LinearModel,
    candidate_features,
    long_share,
    rerank_pool,
    reranker,
)
from chatbot.retrieval.search import SearchHit, hybrid_search
from chatbot.retrieval.terms import bm25, idf, term_stats_refresh, weighted_coverage
from tests.knowledge.test_search import KnowledgeBase, ids, make_knowledge_base

pytestmark = pytest.mark.django_db


@pytest.fixture
def kb(cast: dict[str, User]) -> KnowledgeBase:
    return make_knowledge_base()


def _model(**coef: float) -> LinearModel:
    """A hand-set model: the named base features count, for both kinds of knowledge base (the
    dense ranks only count for the short kind, which the model reads them for), the others
    don't."""
    n = len(RERANK_FEATURES)
    return LinearModel(
        features=RERANK_FEATURES,
        mean=(0.0,) * n,
        scale=(1.0,) * n,
        coef=tuple(coef.get(f.split("@")[0], 0.0) for f in RERANK_FEATURES),
        intercept=0.0,
    )


def _hit(chunk_id: int, document_id: int, dense: int | None, sparse: int | None) -> SearchHit:
    return SearchHit(
        chunk_id=chunk_id,
        score=0.0,
        dense_rank=dense,
        sparse_rank=sparse,
        similarity=0.5,
        text_rank=1.0 if sparse else None,
        heading="",
        text=f"passage {chunk_id}",
        document_id=document_id,
        external_id=f"doc-{document_id}",
        title="",
        url="",
        collection_id=1,
        collection_name="kb",
    )


def test_the_pool_holds_each_legs_best_passages_in_fused_order() -> None:
    # Fused order: the dense leg's first 20 (chunks 1-20), then passages only the full-text leg
    # found, its first and second (chunks 21 and 22) among them: fused top 20 would miss both.
    hits = [_hit(i, i, dense=i, sparse=None) for i in range(1, 21)]
    hits += [_hit(21, 21, dense=None, sparse=1), _hit(22, 22, dense=None, sparse=2)]
    pool = rerank_pool(hits, depth=15)

    assert [h.chunk_id for h in pool] == [*range(1, 16), 21, 22], "each leg's best 15, in order"
    assert rerank_pool(hits, depth=1) == [hits[0], hits[20]]
    assert rerank_pool([]) == []


def test_the_long_share_says_how_many_candidates_share_their_document() -> None:
    faq = [_hit(i, i, dense=i, sparse=i) for i in range(1, 5)]
    articles = [_hit(i, i // 2, dense=i, sparse=i) for i in range(1, 5)]  # docs 0, 1, 1, 2
    assert long_share(faq) == 0.0 and long_share(articles) == 0.5 and long_share([]) == 0.0

    row = candidate_features({}, articles)[0]
    assert row["long_share"] == 0.5
    assert row["sparse_rrf@long"] == row["sparse_rrf@short"] == pytest.approx(row["sparse_rrf"] / 2)
    assert "dense_rrf@long" not in row, "the long kind does not read the dense ranks"
    assert set(RERANK_FEATURES) <= set(row), "every feature the model reads is there"


def test_term_statistics_count_the_chunks_holding_each_lexeme(kb: KnowledgeBase) -> None:
    term_stats_refresh()
    stats = dict(TermStat.objects.values_list("lexeme", "chunks"))

    assert stats[""] == 6, "the empty lexeme counts the current chunks"
    assert stats["password"] == 3 and stats["printer"] == 1, "Postgres's stemmed lexemes"
    term_stats_refresh()
    assert TermStat.objects.count() == len(stats), "a second refresh recounts, never duplicates"


def test_search_weighs_each_query_word_by_its_rarity(kb: KnowledgeBase, alice: User) -> None:
    term_stats_refresh()
    result = hybrid_search(user=alice, query="password printer", k=3)

    assert result.term_weights["printer"] > result.term_weights["password"] > 0
    printer = next(h for h in result.hits if h.external_id == "printer")
    assert printer.term_counts == {"printer": 2} and printer.lexemes > 5, "heading and body"


def test_the_reranker_reorders_the_fused_candidates(kb: KnowledgeBase, alice: User) -> None:
    query = "password reset VPN gateway printer"
    fused = hybrid_search(user=alice, query=query, k=3, rerank=False)
    assert not fused.reranked and all(h.rerank_score is None for h in fused.hits)

    # A model that trusts only the full-text leg's rank gives the full-text leg's order.
    by_text = hybrid_search(user=alice, query=query, k=3, rerank_model=_model(sparse_rrf=1.0))
    text_only = hybrid_search(user=alice, query=query, k=3, dense_weight=0)
    assert by_text.reranked and ids(by_text) == ids(text_only)
    scores = [h.rerank_score for h in by_text.hits]
    assert all(s is not None for s in scores) and scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    assert len({h.chunk_id for h in by_text.hits}) == 3, "a passage fills one slot"

    # ... and one that trusts only the dense leg, the dense order.
    by_meaning = hybrid_search(user=alice, query=query, k=3, rerank_model=_model(dense_rrf=1.0))
    assert ids(by_meaning) == ids(hybrid_search(user=alice, query=query, k=3, sparse_weight=0))


def test_one_leg_alone_is_never_reranked(kb: KnowledgeBase, alice: User) -> None:
    result = hybrid_search(
        user=alice, query="printer", k=3, dense_weight=0, rerank_model=_model(dense_rrf=1.0)
    )
    assert not result.reranked


def test_the_shipped_reranker_loads() -> None:
    model = reranker()
    assert model is not None, "chatbot/retrieval/weights/reranker.json ships with the code"
    assert model.about["trained_on"], "it says what it was trained on"


def test_bm25_and_coverage_favour_rare_words() -> None:
    weights = {"rare": idf(1, 100), "common": idf(90, 100)}
    assert weights["rare"] > weights["common"] > 0
    assert weighted_coverage(weights, {"rare": 1}) > 0.9 > weighted_coverage(weights, {"common": 3})
    assert weighted_coverage({}, {}) == 1.0, "a query without words is covered"
    short = bm25(weights, {"rare": 1}, length=10, mean_length=20)
    long = bm25(weights, {"rare": 1}, length=40, mean_length=20)
    assert short > long > 0, "the same match counts more in a shorter passage"


def test_a_search_can_leave_documents_out_as_if_never_ingested(
    kb: KnowledgeBase, alice: User
) -> None:
    query = "reset a forgotten password"
    full = hybrid_search(user=alice, query=query, k=3, rerank=False)
    gone = full.hits[0]
    without = hybrid_search(
        user=alice, query=query, k=3, rerank=False, exclude_documents=[gone.document_id]
    )

    assert gone.document_id not in {h.document_id for h in without.hits}
    second = full.hits[1]
    moved = next(h for h in without.hits if h.chunk_id == second.chunk_id)
    assert (moved.dense_rank or 99) <= (second.dense_rank or 99), "the others move up"


def test_the_reranker_reads_how_close_each_document_title_is(
    kb: KnowledgeBase, alice: User
) -> None:
    query = "my printer is jammed"
    result = hybrid_search(user=alice, query=query, k=3, rerank=False)
    assert all(h.title_similarity is not None for h in result.hits)
    printer = next(h for h in result.hits if h.external_id == "printer")
    assert printer.title_similarity == max(h.title_similarity or 0 for h in result.hits)

    rows = candidate_features(result.term_weights, result.hits)
    gaps = {h.external_id: row["title_gap"] for h, row in zip(result.hits, rows, strict=True)}
    assert gaps["printer"] == 0.0, "the closest title sets the mark"
    assert all(gap < 0 for key, gap in gaps.items() if key != "printer")

    # A document without a title: the passage's own similarity stands in.
    Document.objects.filter(external_id="printer").update(title_embedding=None)
    untitled = hybrid_search(user=alice, query=query, k=3, rerank=False)
    hit = next(h for h in untitled.hits if h.external_id == "printer")
    assert hit.title_similarity is None
    row = candidate_features(untitled.term_weights, untitled.hits)[untitled.hits.index(hit)]
    best = max(h.title_similarity or h.similarity or 0 for h in untitled.hits)
    assert row["title_gap"] == pytest.approx((hit.similarity or 0) - best)


def test_a_reranker_trusting_titles_puts_the_closest_title_first(
    kb: KnowledgeBase, alice: User
) -> None:
    query = "Someone is leaving the company: what do we switch off?"
    result = hybrid_search(user=alice, query=query, k=3, rerank_model=_model(title_gap=1.0))
    assert result.reranked
    sims = [h.title_similarity or 0.0 for h in result.hits]
    assert sims == sorted(sims, reverse=True) and len(set(sims)) == 3
