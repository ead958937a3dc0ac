"""Hybrid search against real Postgres (pgvector + full-text) with real MiniLM embeddings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import Group, User
from django.db import connection, transaction
from django.utils import timezone

from chatbot.accounts import roles
from chatbot.accounts.visibility import collections_visible_to
from chatbot.llm.embeddings import LocalEmbeddings
from chatbot.models import Chunk, Collection, Document, Source
from chatbot.retrieval.search import (
    DEFAULT_CANDIDATES,
    HNSW_EF_SEARCH,
    SearchHit,
    hybrid_search,
    per_document_first,
)

pytestmark = pytest.mark.django_db


@dataclass
class KnowledgeBase:
    help: Collection  # shared with agents and admins
    admin: Collection  # admins only
    hidden: Collection  # no group


# (collection key, external_id, title, text); each document is one chunk headed by its title.
DOCS = [
    (
        "help",
        "pw-reset",
        "Reset a password",
        "To reset a forgotten password, open the sign-in page and click 'Forgot password'. "
        "The reset link we email expires after 30 minutes.",
    ),
    (
        "help",
        "vpn",
        "Connect to the VPN",
        "Install the VPN client, sign in with your staff account and pick the nearest gateway.",
    ),
    (
        "help",
        "printer",
        "Printer jams",
        "When the office printer jams, open tray 2, remove the crumpled paper and restart it.",
    ),
    (
        "admin",
        "payroll",
        "Payroll corrections",
        "Payroll corrections for a salary paid in error are approved by the finance lead.",
    ),
    (
        "admin",
        "offboarding",
        "Offboarding a leaver",
        "Revoke the leaver's password, VPN certificate and badge on their last day.",
    ),
    (
        "hidden",
        "secret",
        "Secret password vault",
        "The root password vault is kept offline; reset of vault passwords needs two officers.",
    ),
]


def make_knowledge_base() -> KnowledgeBase:
    """Collections, sources, documents and chunks written directly, embedded with the real model."""
    groups = {g.name: g for g in Group.objects.all()}
    collections = {
        "help": Collection.objects.create(name="Help centre"),
        "admin": Collection.objects.create(name="Admin handbook"),
        "hidden": Collection.objects.create(name="Vault"),
    }
    collections["help"].groups.set([groups[roles.AGENT], groups[roles.ADMIN]])
    collections["admin"].groups.set([groups[roles.ADMIN]])
    sources = {
        key: Source.objects.create(collection=c, name=f"{c.name} docs", kind="path", location="/x")
        for key, c in collections.items()
    }
    model = LocalEmbeddings()
    vectors = model.embed_documents([f"{title}\n{text}" for _, _, title, text in DOCS])
    titles = model.embed_documents([title for _, _, title, _ in DOCS])
    for (key, external_id, title, text), vector, title_vector in zip(
        DOCS, vectors, titles, strict=True
    ):
        document = Document.objects.create(
            source=sources[key],
            collection=collections[key],
            external_id=external_id,
            title=title,
            title_embedding=title_vector,
            url=f"https://help.example.com/{external_id}",
            chunk_count=1,
        )
        Chunk.objects.create(
            document=document,
            collection=collections[key],
            ordinal=0,
            heading=title,
            text=text,
            embedding=vector,
        )
    return KnowledgeBase(**collections)


@pytest.fixture
def kb(cast: dict[str, User]) -> KnowledgeBase:
    return make_knowledge_base()


def ids(result: object) -> list[str]:
    return [hit.external_id for hit in result.hits]  # type: ignore[attr-defined]


def test_it_ranks_the_matching_document_first(kb: KnowledgeBase, alice: User) -> None:
    result = hybrid_search(user=alice, query="I forgot my password, how do I reset it?", k=3)
    assert ids(result)[0] == "pw-reset"
    top = result.hits[0]
    assert top.dense_rank == 1 and top.sparse_rank == 1
    assert top.title == "Reset a password"
    assert top.url == "https://help.example.com/pw-reset"
    assert top.collection_name == "Help centre" and top.collection_id == kb.help.pk
    assert top.heading == "Reset a password" and "30 minutes" in top.text
    scores = [hit.score for hit in result.hits]
    assert scores == sorted(scores, reverse=True)


def test_it_finds_paraphrases_the_words_do_not_match(kb: KnowledgeBase, alice: User) -> None:
    # No word in common with the printer document: only the dense leg can find it.
    result = hybrid_search(user=alice, query="the copier is stuck again", k=1)
    assert ids(result) == ["printer"]
    assert result.hits[0].sparse_rank is None


def test_it_matches_some_words_when_not_all_are_present(kb: KnowledgeBase, alice: User) -> None:
    # An AND of every word would match nothing; the OR-ed lexemes still find the VPN page.
    result = hybrid_search(user=alice, query="gateway zebra", k=1, dense_weight=0)
    assert ids(result) == ["vpn"]
    assert result.hits[0].dense_rank is None


def test_it_shows_alice_only_collections_her_groups_see(kb: KnowledgeBase, alice: User) -> None:
    result = hybrid_search(user=alice, query="password reset payroll vault leaver", k=50)
    assert {hit.collection_id for hit in result.hits} == {kb.help.pk}
    assert "payroll" not in ids(result) and "secret" not in ids(result)


def test_it_shows_a_knowledge_admin_every_collection_as_the_pages_do(
    kb: KnowledgeBase, adam: User
) -> None:
    result = hybrid_search(user=adam, query="password reset payroll vault leaver", k=50)
    assert {hit.collection_id for hit in result.hits} == {kb.help.pk, kb.admin.pk, kb.hidden.pk}


def test_it_shows_a_reviewer_only_what_is_shared_with_reviewers(
    kb: KnowledgeBase, rita: User
) -> None:
    assert hybrid_search(user=rita, query="password reset payroll vault", k=50).hits == []
    kb.admin.groups.add(Group.objects.get(name=roles.REVIEWER))
    result = hybrid_search(user=rita, query="password reset payroll vault", k=50)
    assert {hit.collection_id for hit in result.hits} == {kb.admin.pk}


def test_it_lets_collection_ids_narrow_but_never_widen(
    kb: KnowledgeBase, alice: User, adam: User
) -> None:
    narrowed = hybrid_search(user=adam, query="password", k=50, collection_ids=[kb.admin.pk])
    assert {hit.collection_id for hit in narrowed.hits} == {kb.admin.pk}
    widened = hybrid_search(
        user=alice, query="payroll password vault", k=50, collection_ids=[kb.admin.pk, kb.hidden.pk]
    )
    assert widened.hits == []


def test_it_shows_nothing_to_a_user_in_no_group(kb: KnowledgeBase, nora: User) -> None:
    assert hybrid_search(user=nora, query="password", k=50).hits == []


def test_it_skips_disabled_sources_and_failed_documents(kb: KnowledgeBase, alice: User) -> None:
    Source.objects.filter(documents__external_id="vpn").update(enabled=False)
    assert "vpn" not in ids(hybrid_search(user=alice, query="VPN gateway", k=50))
    Source.objects.update(enabled=True)
    Document.objects.filter(external_id="vpn").update(status=Document.Status.ERROR)
    assert "vpn" not in ids(hybrid_search(user=alice, query="VPN gateway", k=50))


def test_it_returns_at_most_k_hits(kb: KnowledgeBase, adam: User) -> None:
    assert len(hybrid_search(user=adam, query="password", k=2).hits) == 2


def test_it_runs_in_one_round_trip(
    kb: KnowledgeBase, alice: User, django_assert_max_num_queries: object
) -> None:
    # The HNSW settings and one statement for both legs, the fusion and the hit rows, sent
    # together. The permission check is Django's, cached on the user object for the request.
    alice.has_perm(roles.MANAGE_KNOWLEDGE)
    with django_assert_max_num_queries(1):  # type: ignore[operator]
        result = hybrid_search(user=alice, query="reset my password", k=5)
    assert result.queries == 1
    assert result.dense_candidates == 3 and result.sparse_candidates >= 1
    timed = result.duration_ms  # recorded for the retrieval span; its size is not asserted
    assert timed > 0


def test_it_measures_each_leg_alone(kb: KnowledgeBase, alice: User) -> None:
    dense = hybrid_search(user=alice, query="reset my password", k=3, sparse_weight=0)
    sparse = hybrid_search(user=alice, query="reset my password", k=3, dense_weight=0)
    assert all(hit.sparse_rank is None for hit in dense.hits)
    assert [hit.dense_rank for hit in dense.hits] == [1, 2, 3]
    assert all(hit.dense_rank is None for hit in sparse.hits)
    assert sparse.embed_ms == 0 and sparse.queries == 1
    assert dense.query_embedded and not sparse.query_embedded


def test_it_survives_queries_made_of_stop_words_and_symbols(kb: KnowledgeBase, alice: User) -> None:
    for query in ["the and of", "'\" & | ! ( ) <->", '"reset password" -vpn']:
        result = hybrid_search(user=alice, query=query, k=3)
        assert len(result.hits) <= 3


def test_it_refuses_an_empty_query(kb: KnowledgeBase, alice: User) -> None:
    with pytest.raises(ValueError, match="empty"):
        hybrid_search(user=alice, query="   ")


def test_it_lists_the_collections_a_user_sees(kb: KnowledgeBase, alice: User, adam: User) -> None:
    assert list(collections_visible_to(alice)) == [kb.help]
    assert list(collections_visible_to(adam).order_by("name")) == [kb.admin, kb.help, kb.hidden]


def test_it_gives_each_dense_hit_its_cosine_similarity(kb: KnowledgeBase, alice: User) -> None:
    related = hybrid_search(user=alice, query="how do I reset my password", k=3)
    unrelated = hybrid_search(user=alice, query="what is the capital of Mongolia", k=3)
    top = related.hits[0]
    assert top.external_id == "pw-reset" and top.similarity is not None
    assert all(h.similarity is not None and h.similarity < top.similarity for h in unrelated.hits)
    sparse_only = hybrid_search(user=alice, query="reset password", k=3, dense_weight=0)
    assert all(hit.similarity is None for hit in sparse_only.hits)


def test_it_returns_a_passage_stored_twice_only_once(kb: KnowledgeBase, alice: User) -> None:
    # The same file ingested as a second source of the collection: same text, new chunk ids.
    original = Chunk.objects.select_related("document").get(document__external_id="pw-reset")
    mirror = Source.objects.create(collection=kb.help, name="copy", kind="path", location="/y")
    copy = Document.objects.create(
        source=mirror, collection=kb.help, external_id="pw-reset", title=original.document.title
    )
    Chunk.objects.create(
        document=copy,
        collection=kb.help,
        ordinal=0,
        heading=original.heading,
        text=original.text,
        embedding=original.embedding,
    )

    result = hybrid_search(user=alice, query="I forgot my password, how do I reset it?", k=3)

    texts = [hit.text for hit in result.hits]
    assert texts[0] == original.text
    assert len(texts) == len(set(texts)) == 3, "no passage twice, and still k of them"
    assert len({hit.chunk_id for hit in result.hits}) == 3


def test_it_never_returns_a_retired_chunk(kb: KnowledgeBase, alice: User) -> None:
    Chunk.objects.filter(document__external_id="pw-reset").update(retired_at=timezone.now())
    assert "pw-reset" not in ids(hybrid_search(user=alice, query="reset my password", k=50))


def test_per_document_first_moves_a_documents_extra_passages_after_the_others() -> None:
    def hit(chunk: int, document: int) -> SearchHit:
        return SearchHit(
            chunk_id=chunk, score=0.0, dense_rank=None, sparse_rank=None, similarity=None,
            text_rank=None, heading="", text="", document_id=document, external_id=str(document),
            title="", url="", collection_id=1, collection_name="c",
        )  # fmt: skip

    hits = [hit(1, 10), hit(2, 10), hit(3, 10), hit(4, 20), hit(5, 20), hit(6, 30)]
    order = lambda cap: [h.chunk_id for h in per_document_first(hits, cap)]  # noqa: E731
    assert order(1) == [1, 4, 6, 2, 3, 5]
    assert order(2) == [1, 2, 4, 5, 6, 3]
    assert order(3) == [1, 2, 3, 4, 5, 6]


def test_it_refuses_a_cap_below_one_passage_a_document(kb: KnowledgeBase, alice: User) -> None:
    with pytest.raises(ValueError, match="per_document"):
        hybrid_search(user=alice, query="password", per_document=0)


# --- the dense leg's two paths: the HNSW index, or every visible chunk scored exactly ---------

EVERYWHERE = 10**6  # exact_scan_max: score every visible chunk whatever their number
HNSW = 0  # exact_scan_max: always the HNSW index


def dense(user: User, path: int, **options: object) -> list[tuple[str, float | None]]:
    result = hybrid_search(
        user=user,
        query="reset a password",
        k=50,
        sparse_weight=0,
        exact_scan_max=path,
        **options,  # type: ignore[arg-type]
    )
    return [(hit.external_id, hit.similarity) for hit in result.hits]


def brute_force(user_sees: list[Collection]) -> list[str]:
    """The visible current chunks by cosine distance to the query, computed here."""
    query = LocalEmbeddings().embed_query("reset a password")
    chunks = Chunk.objects.filter(
        collection__in=user_sees,
        retired_at__isnull=True,
        document__status=Document.Status.OK,
        document__source__enabled=True,
    ).select_related("document")
    distance = {
        c.document.external_id: float(1 - np.dot(c.embedding, query) / np.linalg.norm(c.embedding))
        for c in chunks
    }
    return sorted(distance, key=distance.__getitem__)


def test_both_dense_paths_return_what_each_caller_may_see_in_the_same_order(
    kb: KnowledgeBase, alice: User, adam: User, rita: User, nora: User
) -> None:
    expected = {alice: [kb.help], adam: [kb.help, kb.admin, kb.hidden], rita: [], nora: []}
    for user, sees in expected.items():
        exact, hnsw = dense(user, EVERYWHERE), dense(user, HNSW)
        assert [external_id for external_id, _ in exact] == brute_force(sees), user.username
        assert [e for e, _ in hnsw] == [e for e, _ in exact], user.username
        assert [s for _, s in hnsw] == pytest.approx([s for _, s in exact], abs=1e-6)
    # The same filters on both paths: a narrowing, an excluded document, a retired chunk, a
    # disabled source, a failed document.
    vpn = Document.objects.get(external_id="vpn")
    for options in ({"collection_ids": [kb.admin.pk]}, {"exclude_documents": [vpn.pk]}):
        assert dense(adam, EVERYWHERE, **options) == dense(adam, HNSW, **options)
    Chunk.objects.filter(document__external_id="printer").update(retired_at=timezone.now())
    Source.objects.filter(documents__external_id="payroll").update(enabled=False)  # + offboarding
    Document.objects.filter(external_id="secret").update(status=Document.Status.ERROR)
    left = [e for e, _ in dense(adam, EVERYWHERE)]
    assert sorted(left) == ["pw-reset", "vpn"]
    assert [e for e, _ in dense(adam, HNSW)] == left


def dense_plan(user: User, path: int) -> str:
    """EXPLAIN ANALYZE of the dense leg's statement as hybrid_search sends it."""
    seen: list[tuple[str, Any]] = []

    def keep(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(keep):
        dense(user, path)
    sql, params = seen[-1]
    settings, statement = sql.split(";\n", 1)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(settings, params)
        cursor.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + statement, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def hnsw_ran(plan: str) -> bool:
    """Whether the HNSW path ran: the path behind the one-time filter `count > threshold` (at
    this size the planner may read that path's chunks without the index; which path is taken
    is the statement's choice, what each path reads is the planner's)."""
    lines = [line for line in plan.splitlines() if "Buffers:" not in line]
    gates = {
        ">" if " > " in line else "<=": lines[i + 1]
        for i, line in enumerate(lines)
        if "One-Time Filter: ((InitPlan" in line and (" > " in line or " <= " in line)
    }
    assert set(gates) == {">", "<="}, plan
    assert ("never executed" in gates[">"]) != ("never executed" in gates["<="]), plan
    return "never executed" not in gates[">"]


def test_a_small_visible_collection_is_scored_exactly_not_through_the_whole_graph(
    kb: KnowledgeBase, alice: User, adam: User
) -> None:
    # Alice sees 3 current chunks (the help centre) of the 6 stored: at most 3, every one is
    # scored; one more than the threshold, and the HNSW index is walked.
    assert not hnsw_ran(dense_plan(alice, 3))
    assert hnsw_ran(dense_plan(alice, 2))
    assert hnsw_ran(dense_plan(adam, 5)), "the admin sees all 6"
    # Only current chunks count: with one retired, 2 are left, under the threshold again.
    Chunk.objects.filter(document__external_id="printer").update(retired_at=timezone.now())
    assert not hnsw_ran(dense_plan(alice, 2))
    assert [e for e, _ in dense(alice, 2)] == brute_force([kb.help])


def test_it_refuses_a_negative_exact_scan_threshold(kb: KnowledgeBase, alice: User) -> None:
    with pytest.raises(ValueError, match="exact_scan_max"):
        hybrid_search(user=alice, query="password", exact_scan_max=-1)
    with pytest.raises(ValueError, match="ef_search"):
        hybrid_search(user=alice, query="password", ef_search=0)


def _hnsw_ef_search() -> str:
    # hybrid_search sets it for its transaction; the test's own transaction still holds it.
    with connection.cursor() as cursor:
        cursor.execute("SHOW hnsw.ef_search")
        return str(cursor.fetchone()[0])


def test_the_hnsw_scan_looks_at_least_as_far_as_the_candidates_asked(
    kb: KnowledgeBase, alice: User
) -> None:
    hybrid_search(user=alice, query="password", k=3)
    assert _hnsw_ef_search() == str(HNSW_EF_SEARCH)
    hybrid_search(user=alice, query="password", k=3, ef_search=60)
    assert _hnsw_ef_search() == str(DEFAULT_CANDIDATES)  # the candidates ask for more
    hybrid_search(user=alice, query="password", k=3, candidates=300)
    assert _hnsw_ef_search() == "300"


def test_chunk_vectors_are_stored_in_the_row_not_the_toast_table(db: None) -> None:
    # Every distance computed from the table would read the TOAST table first (migration 0036).
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attstorage FROM pg_attribute"
            " WHERE attrelid = 'chatbot_chunk'::regclass AND attname = 'embedding'"
        )
        assert cursor.fetchone() == ("p",)
