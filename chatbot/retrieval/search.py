"""Hybrid search: pgvector HNSW similarity plus BM25 over Postgres's full-text lexemes (read from
the `chatbot_posting` inverted index), fused by reciprocal rank, then the first few reranked.

One call costs one round trip to Postgres (the HNSW settings, then one statement that runs both
legs, the fusion and the joins for the hits) plus one query embedding on the CPU. Inside an outer
transaction (a test, an atomic request) no extra SAVEPOINT is made.

Visibility is decided inside that statement: a chunk is a candidate only when its collection is
shared with one of the caller's groups (knowledge admins see every collection, as on the pages:
`chatbot.accounts.visibility.sees_every_collection`), its source is enabled, its document
ingested fine and the chunk is current (a retired one is kept only for the past answers citing it).
`collection_ids` can only narrow that set; an id the caller may not see simply matches nothing.

As of past versions (`as_of`, {collection id: version}: replays and experiments run against the
knowledge base as it was on a turn): a chunk is a candidate when it was current in its
collection's given version (`Chunk.valid_from` <= V < `valid_to`, `chatbot.knowledge.ingest`),
whatever its document's state now, and only in the collections `as_of` names. Visibility still
applies as it is NOW: a collection the caller may no longer see, or a source disabled since, is
not read as of any version. The dense leg filters the HNSW scan on the versions (iterative scan
keeps it filling `candidates`). The full-text leg cannot read `chatbot_posting`, which holds
current chunks only, so it scores every candidate chunk holding a query word from its own
full-text vector with the same BM25 formula and weights: exact, and slower (it reads all the
collections' chunks of those versions; fine for offline runs, never used by live chat). The IDFs
are today's (`chatbot_termstat`), as are the reranker's; for a collection that has not changed
since, an as-of search returns what a current one does, in the same order.

A passage is returned once: a chunk id appears once, and of chunks with the same text (one file in
two sources, a copied document) only the best-ranked one is kept, so `k` hits are `k` passages.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db import connection, transaction

from chatbot.accounts.visibility import sees_every_collection
from chatbot.llm.embeddings import embeddings
from chatbot.models import Document
from chatbot.retrieval.rerank import (
    RERANK_LEG_DEPTH,
    LinearModel,
    rerank_order,
    rerank_pool,
    reranker,
)
from chatbot.retrieval.terms import query_weights

RRF_K = 60
# How deep each leg searches before fusion. 100 rather than 50: HNSW recall@10
# against an exact scan rose from 0.945 to 0.963 at 100,000 chunks for +0.1 ms (bench_search), and
# fused doc recall@5 from 0.877 to 0.881 (faq) and 0.977 to 0.981 (covidqa_dev).
DEFAULT_CANDIDATES = 100
# How far the HNSW scan looks (hnsw.ef_search = max(candidates, this)). It followed `candidates`
# alone until the dense top 10's recall@10 against an exact scan measured 0.948 at 100,000 chunks
# (bench_search; the goal is 0.95). Swept on 200 questions there (the first 100 of covidqa_dev and
# of faq): ef_search 100 / 120 / 140 / 160 / 200 found 0.957 / 0.966 / 0.979 / 0.983 / 0.988 of it,
# the dense leg taking 4.4-5.3 / 4.4-4.5 / 4.7-5.1 / 4.9-5.9 / 5.4-5.5 ms (two rounds each). 140
# was chosen for a margin over 0.95; on the other 257 questions, which the sweep did not see, 100
# found 0.957 and 140 found 0.981, the dense leg 3.6-3.9 ms either way. Chosen on speed and
# recall against the exact scan, not on any evaluation set's answers.
HNSW_EF_SEARCH = 140
# Reciprocal rank fusion weights, dense 1 : sparse 0.5. Swept on the TUNING parts of splits.json
# (sparse 0, 0.1, 0.25, 0.5, 0.75, 1; criterion fixed first: mean fused doc recall@5 over faq-tune
# and covidqa_dev-tune, then mean MRR@10): 0.75 won (mean r@5 0.945, MRR 0.856; 0.5 gave 0.933,
# 0.848) but on the CONFIRMING parts it lost faq recall@5 (0.836 against 0.5's 0.869; covidqa_dev
# 1.000 both), so 0.5 stays. At 0.5: faq tune/confirm r@5 0.893/0.869, covidqa_dev 0.972/1.000.
# Every difference is 1 to 4 questions of 122 or 144, within noise (README, "Knowledge base").
DEFAULT_DENSE_WEIGHT = 1.0
DEFAULT_SPARSE_WEIGHT = 0.5
# Full-text weights for labels {D, C, B, A}, each 0..1 (Postgres's convention; only B, a chunk's
# body, and A, its heading: document title and section, occur): an occurrence in the heading
# counts five times one in the body. The BM25 term frequency is body + 5 x heading at these
# defaults (the postings' impact order assumes them); other weights scale each part by its
# weight over the default body weight.
DEFAULT_TEXT_WEIGHTS = (0.1, 0.1, 0.2, 1.0)
# How many postings of each query lexeme the full-text leg reads (highest impact first), and how
# many of its best chunks, per candidate asked, go on to the rest of the visibility filter.
TERM_POSTINGS = 1000
POOL_FACTOR = 3
# The dense leg scores every visible current chunk (exact) instead of walking the HNSW index when
# the caller's collections hold at most this many (see _DENSE).
EXACT_SCAN_MAX = 3000
# How many passages of one document the first `k` hits of POST /api/search may hold while other
# documents have passages to offer (the rest follow). Reranked hits are ordered by how likely
# their document answers the query, so one long article's passages otherwise fill the list: on
# the held-out COVID-QA articles the first 5 passages held the gold article for 0.794 of the
# questions where the first 5 documents did for 0.896. Chosen on the tuning parts (README): the
# share of questions whose gold document is among the first 5 passages, caps 1, 2, 3, none.
SEARCH_PER_DOCUMENT = 1


@dataclass(frozen=True)
class SearchHit:
    chunk_id: int
    score: float
    dense_rank: int | None  # 1-based rank in the dense leg; None when that leg did not find it
    sparse_rank: int | None
    # Cosine similarity of the chunk to the query (1 = same direction), whichever leg found it;
    # None in a full-text-only search. Unlike the fused score, it says how relevant a hit is.
    similarity: float | None
    # The full-text leg's BM25 score of the chunk; None when that leg did not find it.
    text_rank: float | None
    heading: str
    text: str
    document_id: int
    external_id: str
    title: str
    url: str
    collection_id: int
    collection_name: str
    # The passage's count of each query lexeme (Postgres's stemmed words) and its own number of
    # distinct lexemes: the rerank stage's BM25 and coverage read them.
    term_counts: dict[str, int] = field(default_factory=dict)
    lexemes: int = 0
    # Cosine similarity of the query to the passage's document title on its own; None without
    # the query vector or a title.
    title_similarity: float | None = None
    # The reranker's log-odds that the passage's document answers the query; None when the
    # result was not reranked (one leg only, or no reranker). Hits are in this order when set.
    rerank_score: float | None = None


@dataclass
class SearchResult:
    """The hits plus what a retrieval span records: timings and how many candidates each leg gave."""

    hits: list[SearchHit]
    duration_ms: float
    embed_ms: float
    sql_ms: float
    dense_candidates: int
    sparse_candidates: int
    queries: int  # round trips to Postgres
    rerank_ms: float = 0.0
    reranked: bool = False
    # True when this search embedded the query itself; False when the caller passed the vector
    # (the answer cache's lookup embeds the question once for both) or no dense leg ran.
    query_embedded: bool = False
    # Each query lexeme's IDF in the knowledge base (`chatbot.retrieval.terms`).
    term_weights: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


def _vector_literal(vector: list[float]) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in vector) + "]"


def _caller_may_see(column: str) -> str:
    """SQL: the collection in `column` is one the caller sees (shared with one of their groups,
    or they see every collection) and, with `collection_ids`, one of those."""
    return f"""
    (%(see_all)s OR {column} IN (
        SELECT cg.collection_id FROM chatbot_collection_groups cg
        JOIN auth_user_groups ug ON ug.group_id = cg.group_id
        WHERE ug.user_id = %(user_id)s))
    AND (%(collections)s::bigint[] IS NULL OR {column} = ANY(%(collections)s::bigint[]))"""  # noqa: S608 (a column name from this module; values are bound)


# Candidate filter shared by both legs. Every value is bound by name. The document's part alone
# (`d` and its source `s`) also picks the documents the dense leg's exact path may return.
_DOCUMENT_SEARCHABLE = f"""d.status = '{Document.Status.OK}' AND s.enabled
    AND (%(exclude)s::bigint[] IS NULL OR d.id <> ALL(%(exclude)s::bigint[]))
"""
_SEARCHABLE = f"""{_DOCUMENT_SEARCHABLE} AND c.retired_at IS NULL
"""
_VISIBLE = f"""{_caller_may_see("c.collection_id")}
    AND {_SEARCHABLE}"""
_FROM = """
    chatbot_chunk c
    JOIN chatbot_document d ON d.id = c.document_id
    JOIN chatbot_source s ON s.id = d.source_id
"""

# As of past versions: the collection's version in the bound {collection id: version} object;
# NULL (matching nothing) for a collection it does not name.
_AS_OF_VERSION = "(%(as_of)s::jsonb ->> c.collection_id::text)::bigint"
_AS_OF_VISIBLE = f"""{_caller_may_see("c.collection_id")}
    AND s.enabled AND c.valid_from <= {_AS_OF_VERSION}
    AND (c.valid_to IS NULL OR c.valid_to > {_AS_OF_VERSION})
    AND (%(exclude)s::bigint[] IS NULL OR d.id <> ALL(%(exclude)s::bigint[]))
"""


def _dense(visible: str) -> str:
    # The query vector is bound once (a 384-number literal) and read as an InitPlan parameter,
    # which the HNSW index scan accepts as it does a constant.
    return f"""
query_vector AS (SELECT %(vector)s::vector AS v),
dense_raw AS MATERIALIZED (
    SELECT c.id, c.embedding <=> (SELECT v FROM query_vector) AS distance
    FROM {_FROM} WHERE {visible}
    ORDER BY c.embedding <=> (SELECT v FROM query_vector)
    LIMIT %(candidates)s),
dense AS (SELECT id, distance, row_number() OVER (ORDER BY distance, id) AS r FROM dense_raw)
"""  # noqa: S608


# The dense leg over current chunks takes one of two paths, chosen in the statement by how many
# current chunks the caller's collections hold (their ids listed, up to EXACT_SCAN_MAX + 1, from
# the partial index `chunk_current_by_collection` alone):
# - more: the HNSW index, filtered (pgvector's iterative scan keeps walking the graph until
#   `candidates` visible chunks are found);
# - at most EXACT_SCAN_MAX: those chunks, fetched by id, every distance computed and sorted:
#   exact. A filtered HNSW scan walks the whole knowledge base's graph to find the few chunks of
#   a small collection, and when they are fewer than `candidates` it walks until
#   hnsw.max_scan_tuples (20,000) every time: about 300 ms a search for an agent who saw a demo
#   collection beside 100,000 chunks they may not see (bench_search, "small collections").
# The path not taken is not executed (a one-time filter on the count). The ids are listed rather
# than read again by collection because the planner, expecting a collection to hold its share
# of a big table, would read them with a sequential scan; and listed in id order, which the index
# gives for free and a sequential scan only by reading and sorting every row of the collection,
# so that the planner does not try one (it did, for the count, once a VACUUM FULL had emptied the
# visibility map and made the index look dear). The listed chunks are fetched with `id = ANY`
# and kept when their document is among the caller's searchable ones, a set read once and
# hashed (one row a document of the visible collections): joining each chunk to its document and
# source cost an index probe a chunk, a third of the exact path's time at 1,940 chunks
# (bench_search, "small collections").
_DENSE = f"""
query_vector AS (SELECT %(vector)s::vector AS v),
dense_visible AS MATERIALIZED (
    SELECT count(*) AS n, array_agg(y.id) AS ids FROM (
        SELECT x.id FROM chatbot_collection col CROSS JOIN LATERAL (
            SELECT cc.id FROM chatbot_chunk cc
            WHERE cc.collection_id = col.id AND cc.retired_at IS NULL
            ORDER BY cc.id
            LIMIT %(exact_scan_max)s + 1) x
        WHERE {_caller_may_see("col.id")}
        LIMIT %(exact_scan_max)s + 1) y),
dense_raw AS MATERIALIZED (
    (SELECT c.id, c.embedding <=> (SELECT v FROM query_vector) AS distance
     FROM {_FROM} WHERE {_VISIBLE} AND (SELECT n FROM dense_visible) > %(exact_scan_max)s
     ORDER BY c.embedding <=> (SELECT v FROM query_vector)
     LIMIT %(candidates)s)
    UNION ALL
    (SELECT c.id, c.embedding <=> (SELECT v FROM query_vector) AS distance
     FROM chatbot_chunk c
     WHERE c.id = ANY((SELECT ids FROM dense_visible)::bigint[]) AND c.retired_at IS NULL
       AND c.document_id IN (
         SELECT d.id FROM chatbot_document d JOIN chatbot_source s ON s.id = d.source_id
         WHERE {_caller_may_see("s.collection_id")} AND {_DOCUMENT_SEARCHABLE})
       AND (SELECT n FROM dense_visible) <= %(exact_scan_max)s
     ORDER BY (c.embedding <=> (SELECT v FROM query_vector)) + 0, c.id
     LIMIT %(candidates)s)),
dense AS (SELECT id, distance, row_number() OVER (ORDER BY distance, id) AS r FROM dense_raw)
"""  # noqa: S608
_DENSE_AS_OF = _dense(_AS_OF_VISIBLE)
_NO_DENSE = (
    "dense AS (SELECT NULL::bigint AS id, NULL::float8 AS distance, NULL::bigint AS r WHERE false)"
)

# The full-text leg is BM25 over the inverted index `chatbot_posting` (migration 0012, formula in
# `chatbot.retrieval.terms`): for each query lexeme, the TERM_POSTINGS postings of visible
# collections with the highest impact (an index scan in impact order), each weighed by the
# lexeme's IDF; a chunk's score is the sum over the lexemes it was found under. A chunk below a
# common word's first TERM_POSTINGS postings loses only that word's (small, low-IDF) share. The
# first POOL_FACTOR x candidates scores then pass the rest of the visibility filter (document
# status, source enabled, excluded documents). Replaces ts_rank over an OR-ed tsquery, which read
# and ranked every chunk holding any query word (61.5 ms p50 at 100,000 chunks, bench_search).
# `query_idf` is `chatbot.retrieval.terms.idf` in SQL (the rerank features use the Python one).
_QUERY_IDF = """
query_idf AS MATERIALIZED (
    SELECT ql.lexeme, ln(1 + (greatest(f.total, f.df) - f.df + 0.5) / (f.df + 0.5)) AS idf
    FROM query_terms qt CROSS JOIN LATERAL unnest(qt.lexemes) AS ql(lexeme)
    CROSS JOIN LATERAL (
        SELECT coalesce((qt.frequencies ->> ql.lexeme)::float8, 0) AS df,
               coalesce((qt.frequencies ->> '')::float8, 0) AS total) f)"""
_SPARSE = f"""
visible_collections AS MATERIALIZED (
    SELECT coalesce(array_agg(col.id), '{{}}') AS ids FROM chatbot_collection col
    WHERE {_caller_may_see("col.id")}),{_QUERY_IDF},
sparse_scored AS MATERIALIZED (
    SELECT p.chunk_id AS id, sum(p.idf * chatbot_bm25_impact(p.tf, p.length)) AS rank
    FROM query_idf qi CROSS JOIN visible_collections vc CROSS JOIN LATERAL (
        SELECT p.chunk_id, p.length, qi.idf,
               %(body_weight)s::float8 * p.body + %(heading_weight)s::float8 * p.heading AS tf
        FROM chatbot_posting p
        WHERE p.lexeme = qi.lexeme AND p.collection_id = ANY(vc.ids)
        ORDER BY p.impact DESC
        LIMIT %(term_postings)s) p
    WHERE p.tf > 0
    GROUP BY p.chunk_id
    ORDER BY rank DESC, p.chunk_id
    LIMIT %(pool)s),
sparse_raw AS MATERIALIZED (
    SELECT c.id, ss.rank
    FROM sparse_scored ss
    JOIN chatbot_chunk c ON c.id = ss.id
    JOIN chatbot_document d ON d.id = c.document_id
    JOIN chatbot_source s ON s.id = d.source_id
    WHERE {_VISIBLE}
    ORDER BY ss.rank DESC, c.id
    LIMIT %(candidates)s),
sparse AS (SELECT id, rank, row_number() OVER (ORDER BY rank DESC, id) AS r FROM sparse_raw)
"""  # noqa: S608
# As of past versions: the same BM25, each query lexeme's body and heading occurrences counted
# from the chunk's own full-text vector as migration 0012's trigger counts them for a posting.
_SPARSE_AS_OF = f"""{_QUERY_IDF},
sparse_raw AS MATERIALIZED (
    SELECT c.id, sum(qi.idf * chatbot_bm25_impact(w.tf, length(c.search_vector))) AS rank
    FROM {_FROM}
    CROSS JOIN LATERAL unnest(c.search_vector) u
    JOIN query_idf qi ON qi.lexeme = u.lexeme
    CROSS JOIN LATERAL (
        SELECT %(body_weight)s::float8 * least(count(*) FILTER (WHERE l <> 'A'), 32767)
               + %(heading_weight)s::float8 * least(count(*) FILTER (WHERE l = 'A'), 32767) AS tf
        FROM unnest(u.weights) l) w
    WHERE {_AS_OF_VISIBLE} AND w.tf > 0
    GROUP BY c.id
    ORDER BY rank DESC, c.id
    LIMIT %(candidates)s),
sparse AS (SELECT id, rank, row_number() OVER (ORDER BY rank DESC, id) AS r FROM sparse_raw)
"""  # noqa: S608
_NO_SPARSE = (
    "sparse AS (SELECT NULL::bigint AS id, NULL::float4 AS rank, NULL::bigint AS r WHERE false)"
)

# The cosine similarity of every returned passage, whichever leg found it (NULL without the query
# vector, in a full-text-only search).
_SIMILARITY = "1 - (c.embedding <=> (SELECT v FROM query_vector))"
# ... and of its document's title on its own (NULL for a document without a title).
_TITLE_SIMILARITY = "1 - (d.title_embedding <=> (SELECT v FROM query_vector))"
# The query's own lexemes (stemmed as the chunks' vectors are) with how many chunks hold each
# ("" -> all chunks), and per returned passage its count of each: the rerank stage's BM25 input.
_TERMS = """
query_lexemes AS (
    SELECT coalesce(array_agg(lexeme), '{}') AS lexemes
    FROM unnest(to_tsvector('english', %(query)s))),
query_terms AS MATERIALIZED (
    SELECT ql.lexemes,
           (SELECT coalesce(jsonb_object_agg(t.lexeme, t.chunks), '{}') FROM chatbot_termstat t
            WHERE t.lexeme = ANY(ql.lexemes) OR t.lexeme = '') AS frequencies
    FROM query_lexemes ql),
"""
_FUSE = """
fused AS (
    SELECT coalesce(dense.id, sparse.id) AS id, dense.r AS dense_rank, sparse.r AS sparse_rank,
           sparse.rank AS text_rank,
           coalesce(%(dense_weight)s / (%(rrf_k)s + dense.r), 0)
           + coalesce(%(sparse_weight)s / (%(rrf_k)s + sparse.r), 0) AS score
    FROM dense FULL OUTER JOIN sparse ON dense.id = sparse.id),
passages AS (
    SELECT DISTINCT ON (c.text_hash) f.*
    FROM fused f JOIN chatbot_chunk c ON c.id = f.id
    ORDER BY c.text_hash, f.score DESC, coalesce(f.dense_rank, f.sparse_rank), f.id),
ranked AS (
    SELECT p.*,
           row_number() OVER (ORDER BY score DESC, coalesce(dense_rank, sparse_rank), id) AS pos,
           row_number() OVER (ORDER BY dense_rank NULLS LAST, id) AS dense_pos,
           row_number() OVER (ORDER BY sparse_rank NULLS LAST, id) AS sparse_pos
    FROM passages p),
top AS (
    SELECT * FROM ranked
    WHERE pos <= %(k)s
       OR (dense_rank IS NOT NULL AND dense_pos <= %(leg_depth)s)
       OR (sparse_rank IS NOT NULL AND sparse_pos <= %(leg_depth)s))
SELECT f.id, f.score, f.dense_rank, f.sparse_rank, c.heading, c.text, d.id, d.external_id,
       d.title, d.url, col.id, col.name,
       (SELECT count(*) FROM dense), (SELECT count(*) FROM sparse), {similarity}, f.text_rank,
       (SELECT coalesce(jsonb_object_agg(u.lexeme, coalesce(array_length(u.positions, 1), 1)),
                        '{}')
        FROM unnest(c.search_vector) u
        WHERE u.lexeme = ANY(qt.lexemes)),
       length(c.search_vector), qt.frequencies, qt.lexemes, {title_similarity}
FROM top f CROSS JOIN query_terms qt
JOIN chatbot_chunk c ON c.id = f.id
JOIN chatbot_document d ON d.id = c.document_id
JOIN chatbot_collection col ON col.id = c.collection_id
ORDER BY f.score DESC, coalesce(f.dense_rank, f.sparse_rank), f.id
"""


def hybrid_search(
    *,
    user: User | AnonymousUser,
    query: str,
    k: int = 5,
    collection_ids: list[int] | None = None,
    candidates: int = DEFAULT_CANDIDATES,
    dense_weight: float = DEFAULT_DENSE_WEIGHT,
    sparse_weight: float = DEFAULT_SPARSE_WEIGHT,
    text_weights: tuple[float, float, float, float] = DEFAULT_TEXT_WEIGHTS,
    rerank: bool = True,
    rerank_model: LinearModel | None = None,
    exclude_documents: list[int] | None = None,
    term_postings: int = TERM_POSTINGS,
    query_vector: list[float] | None = None,
    as_of: dict[int, int] | None = None,
    leg_depth: int | None = None,
    per_document: int | None = None,
    exact_scan_max: int = EXACT_SCAN_MAX,
    ef_search: int = HNSW_EF_SEARCH,
) -> SearchResult:
    """The top `k` chunks `user` may see for `query`, best first.

    A weight of 0 skips that leg entirely (no embedding for a sparse-only search), which is how
    the evaluation measures each leg on its own. With both legs and `rerank`, each leg's best
    `RERANK_LEG_DEPTH` passages are reordered by `rerank_model` (default: the shipped reranker,
    `chatbot.retrieval.rerank`; none shipped: the fused order stands) and come first. `exclude_documents`
    searches as if those documents had never been ingested (how the no-answer classifier's
    training asks a question whose document is missing). `term_postings` is how many postings
    of each query word the full-text leg reads (the benchmark compares the default with all).
    `query_vector` is `query` already embedded (the answer cache's semantic lookup did it).
    `as_of` ({collection id: version}) searches those collections as they were at those
    versions (module docstring); None: as they are now. `leg_depth` (training) returns, in fused
    order and beyond `k`, every passage among the best `leg_depth` of either leg, unreranked.
    `per_document` caps the passages of one document among the first `k` hits while other
    documents have passages to offer (`per_document_first`); None: no cap, as an answer's
    context wants its best document's passages together. `exact_scan_max`: the dense leg scores
    every visible chunk when there are at most this many (0: always the HNSW index).
    `ef_search`: how many candidates the HNSW scan keeps while it walks the graph (at least
    `candidates`); more finds more of the exact nearest chunks, slower.
    """
    query = query.strip()
    if not query:
        raise ValueError("The search query is empty.")
    if (
        k < 1
        or candidates < 1
        or term_postings < 1
        or (per_document is not None and per_document < 1)
        or exact_scan_max < 0
        or ef_search < 1
    ):
        raise ValueError(
            "k, candidates, term_postings, per_document and ef_search must be positive, and "
            "exact_scan_max not negative."
        )
    if len(text_weights) != 4 or not all(0 <= w <= 1 for w in text_weights):
        raise ValueError("text_weights are four numbers from 0 to 1 (labels D, C, B, A).")
    if dense_weight < 0 or sparse_weight < 0 or dense_weight + sparse_weight == 0:
        raise ValueError("Fusion weights must not be negative, and one must be above 0.")
    started = time.perf_counter()
    params: dict[str, Any] = {
        "query": query,
        "k": k,
        "candidates": max(candidates, k),
        "user_id": user.pk if user.is_authenticated else None,
        "see_all": sees_every_collection(user),
        "collections": list(collection_ids) if collection_ids is not None else None,
        "exclude": list(exclude_documents) if exclude_documents else None,
        "dense_weight": float(dense_weight),
        "sparse_weight": float(sparse_weight),
        "rrf_k": float(RRF_K),
        "body_weight": text_weights[2] / DEFAULT_TEXT_WEIGHTS[2],
        "heading_weight": text_weights[3] / DEFAULT_TEXT_WEIGHTS[2],
        "term_postings": term_postings,
        "exact_scan_max": exact_scan_max,
    }
    use_dense, use_sparse = dense_weight > 0, sparse_weight > 0
    model = (rerank_model or reranker()) if rerank and use_dense and use_sparse else None
    # With a reranker, each leg's best passages come back too (the rerank pool), beyond `k`.
    params["leg_depth"] = (
        (RERANK_LEG_DEPTH if model is not None else 0) if leg_depth is None else leg_depth
    )
    params["pool"] = params["candidates"] * POOL_FACTOR
    if as_of is not None:
        params["as_of"] = json.dumps({str(int(pk)): int(v) for pk, v in as_of.items()})
    embed_ms = 0.0
    query_embedded = use_dense and query_vector is None
    if use_dense:
        vector = query_vector if query_vector is not None else embeddings().embed_query(query)
        params["vector"] = _vector_literal(vector)
        embed_ms = (time.perf_counter() - started) * 1000
    if as_of is None:
        ctes = [_DENSE if use_dense else _NO_DENSE, _SPARSE if use_sparse else _NO_SPARSE]
    else:
        ctes = [
            _DENSE_AS_OF if use_dense else _NO_DENSE,
            _SPARSE_AS_OF if use_sparse else _NO_SPARSE,
        ]
    fuse = _FUSE.replace("{similarity}", _SIMILARITY if use_dense else "NULL::float8").replace(
        "{title_similarity}", _TITLE_SIMILARITY if use_dense else "NULL::float8"
    )
    sql = "WITH " + _TERMS + ",\n".join(ctes) + ",\n" + fuse

    sql_started = time.perf_counter()
    # SET LOCAL needs a transaction; savepoint=False reuses the caller's one when there is one.
    # The HNSW settings go in the same round trip as the search (two statements, one execute).
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        if use_dense:
            # The HNSW scan stops after ef_search tuples; filtered-out ones would starve the
            # result, so search at least `candidates` deep and let pgvector keep scanning.
            params["ef_search"] = str(max(params["candidates"], ef_search))
            sql = (
                "SELECT set_config('hnsw.ef_search', %(ef_search)s, true),"
                " set_config('hnsw.iterative_scan', 'relaxed_order', true);\n" + sql
            )
        cursor.execute(sql, params)
        if use_dense:
            cursor.nextset()
        rows = cursor.fetchall()
    sql_ms = (time.perf_counter() - sql_started) * 1000

    hits = [_hit(row) for row in rows]
    weights = query_weights(_json(rows[0][18]), rows[0][19]) if rows else {}
    rerank_ms = 0.0
    if model is not None and hits:
        rerank_started = time.perf_counter()
        # The pool (each leg's best passages) is reordered and comes first; any other passages
        # (k beyond the pool) follow in fused order.
        pool = rerank_pool(hits)
        ordered, scores = rerank_order(weights, pool, model)
        in_pool = {hit.chunk_id for hit in pool}
        reranked = [
            dataclasses.replace(hit, rerank_score=score)
            for hit, score in zip(ordered, scores, strict=True)
        ]
        hits = reranked + [hit for hit in hits if hit.chunk_id not in in_pool]
        rerank_ms = (time.perf_counter() - rerank_started) * 1000
    if per_document is not None:
        hits = per_document_first(hits, per_document)
    hits = hits[:k] if leg_depth is None else hits
    return SearchResult(
        hits=hits,
        duration_ms=(time.perf_counter() - started) * 1000,
        embed_ms=embed_ms,
        query_embedded=query_embedded,
        sql_ms=sql_ms,
        dense_candidates=int(rows[0][12]) if rows else 0,
        sparse_candidates=int(rows[0][13]) if rows else 0,
        queries=1,
        rerank_ms=rerank_ms,
        reranked=model is not None,
        term_weights=weights,
        params={k_: v for k_, v in params.items() if k_ not in ("vector", "query", "ef_search")},
    )


def per_document_first(hits: list[SearchHit], cap: int) -> list[SearchHit]:
    """`hits` with each document's passages beyond its first `cap` moved after every other
    document's first `cap`, both groups in their own order."""
    first: list[SearchHit] = []
    later: list[SearchHit] = []
    taken: dict[int, int] = {}
    for hit in hits:
        taken[hit.document_id] = taken.get(hit.document_id, 0) + 1
        (first if taken[hit.document_id] <= cap else later).append(hit)
    return first + later


def _json(value: Any) -> dict[str, Any]:
    """A jsonb column: Django's Postgres connection hands those over undecoded, as text."""
    decoded = json.loads(value) if isinstance(value, str | bytes) else value
    return decoded if isinstance(decoded, dict) else {}


def _hit(row: tuple[Any, ...]) -> SearchHit:
    return SearchHit(
        chunk_id=row[0],
        score=float(row[1]),
        dense_rank=row[2],
        sparse_rank=row[3],
        similarity=None if row[14] is None else float(row[14]),
        title_similarity=None if row[20] is None else float(row[20]),
        text_rank=None if row[15] is None else float(row[15]),
        term_counts={str(k): int(v) for k, v in _json(row[16]).items()},
        lexemes=int(row[17] or 0),
        heading=row[4],
        text=row[5],
        document_id=row[6],
        external_id=row[7],
        title=row[8],
        url=row[9],
        collection_id=row[10],
        collection_name=row[11],
    )
