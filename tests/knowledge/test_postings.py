"""The full-text leg's inverted index (`chatbot_posting`), kept by Postgres triggers, and the
BM25 ranking that reads it."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from chatbot.models import Chunk, Posting
from chatbot.retrieval.search import hybrid_search
from chatbot.retrieval.terms import impact, term_stats_refresh
from tests.knowledge.test_search import KnowledgeBase, ids, make_knowledge_base

pytestmark = pytest.mark.django_db


@pytest.fixture
def kb(cast: dict[str, User]) -> KnowledgeBase:
    return make_knowledge_base()


def _postings(chunk: Chunk) -> dict[str, tuple[int, int, int, float]]:
    return {
        p.lexeme: (p.body, p.heading, p.length, p.impact)
        for p in Posting.objects.filter(chunk=chunk)
    }


def test_a_new_chunk_gets_one_posting_a_lexeme_with_its_bm25_impact(kb: KnowledgeBase) -> None:
    chunk = Chunk.objects.get(document__external_id="pw-reset")
    postings = _postings(chunk)

    with connection.cursor() as cursor:
        cursor.execute("SELECT length(search_vector) FROM chatbot_chunk WHERE id = %s", [chunk.pk])
        (length,) = cursor.fetchone()
    assert len(postings) == length, "one posting for each distinct lexeme of the chunk"
    # "Reset a password" / "To reset a forgotten password, ... 'Forgot password'. The reset ..."
    body, heading, chunk_length, score = postings["password"]
    assert (body, heading, chunk_length) == (2, 1, length)
    assert score == pytest.approx(impact(2, 1, length), rel=1e-6)
    assert postings["reset"][:2] == (2, 1) and postings["email"][:2] == (1, 0)
    assert all(p.collection_id == kb.help.pk for p in Posting.objects.filter(chunk=chunk))


def test_postings_follow_the_chunk_when_it_changes_retires_or_goes(kb: KnowledgeBase) -> None:
    chunk = Chunk.objects.get(document__external_id="printer")
    total = Posting.objects.count()

    Chunk.objects.filter(pk=chunk.pk).update(text="Toner cartridges live in the supply room.")
    assert "toner" in _postings(chunk) and "tray" not in _postings(chunk), "rewritten, not added"
    assert _postings(chunk)["jam"][:2] == (0, 1), "the heading is still 'Printer jams'"

    Chunk.objects.filter(pk=chunk.pk).update(retired_at=timezone.now())
    assert _postings(chunk) == {}, "a retired chunk is not searched"
    Chunk.objects.filter(pk=chunk.pk).update(retired_at=None)
    assert _postings(chunk)

    Chunk.objects.filter(pk=chunk.pk).delete()
    assert not Posting.objects.filter(chunk_id=chunk.pk).exists()
    assert Posting.objects.count() < total


def test_the_full_text_leg_weighs_rare_words_above_common_ones(
    kb: KnowledgeBase, adam: User
) -> None:
    term_stats_refresh()
    # "password" is in three of the six chunks, "badge" in one: the leaver's chunk, holding both,
    # comes first, and the chunks holding only the common word follow.
    result = hybrid_search(user=adam, query="password badge", k=5, dense_weight=0)
    assert ids(result)[0] == "offboarding"
    assert set(ids(result)) == {"offboarding", "pw-reset", "secret"}
    ranks = [h.text_rank for h in result.hits]
    assert all(r is not None and r > 0 for r in ranks) and ranks == sorted(ranks, reverse=True)  # type: ignore[type-var]


def test_the_heading_weight_is_a_lever(kb: KnowledgeBase, alice: User) -> None:
    # "printer" is in the printer chunk's heading and its body; "gateway" only in the VPN body.
    default = hybrid_search(user=alice, query="printer", k=3, dense_weight=0)
    no_heading = hybrid_search(
        user=alice, query="printer", k=3, dense_weight=0, text_weights=(0.1, 0.1, 0.2, 0.0)
    )
    assert ids(default) == ids(no_heading) == ["printer"]
    assert default.hits[0].text_rank > no_heading.hits[0].text_rank  # type: ignore[operator]
    headings_only = hybrid_search(
        user=alice, query="gateway", k=3, dense_weight=0, text_weights=(0.1, 0.1, 0.0, 1.0)
    )
    assert headings_only.hits == [], "'gateway' is only in a body"


def test_the_full_text_leg_leaves_out_what_the_caller_may_not_see(
    kb: KnowledgeBase, alice: User, adam: User
) -> None:
    query = "password payroll vault"
    assert set(ids(hybrid_search(user=alice, query=query, k=6, dense_weight=0))) == {"pw-reset"}
    assert set(ids(hybrid_search(user=adam, query=query, k=6, dense_weight=0))) == {
        "pw-reset",
        "payroll",
        "offboarding",
        "secret",
    }
    narrowed = hybrid_search(
        user=adam, query=query, k=6, dense_weight=0, collection_ids=[kb.admin.pk]
    )
    assert set(ids(narrowed)) == {"payroll", "offboarding"}
