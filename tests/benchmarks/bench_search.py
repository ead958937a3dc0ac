"""Search latency at 100,000 chunks: our hybrid search versus an exact scan, and the HNSW recall.

    .venv/bin/python tests/benchmarks/bench_search.py [--chunks 100000] [--real 3000]
        [--queries 200] [--keep] [--explain] [--small 100,1000,3000] [--only-small]

About 5 minutes on 2 cores when it loads the data (most of it embedding the real chunks and the
COPY), under 2 when a --keep run left it.

Data: a scratch collection in the dev database (the embedded services start if needed; migrations
are applied). Embedding 100,000 chunks on 2 CPU cores would take about an hour, so:
  real chunks: the eval sets' documents (covidqa_dev articles, then the faq answers, which the
      questions below are about), then pages of Debian's PostgreSQL manual in a seeded random
      order when it is installed (`apt-get install postgresql-doc-15`), until --real chunks; parsed
      and split by our own parsers and splitter, embedded by `LocalEmbeddings` (a few minutes);
  synthetic chunks: the rest, as numbered replicas of the real documents ("<id>~2", "<id>~3", ...).
      A replica's chunk keeps its parent chunk's heading and text (so the full-text leg has as
      many rows to rank) and gets the parent's vector plus Gaussian noise drawn with the covariance
      of the real vectors (so it stays in the region of the space the model uses), scaled to a
      norm drawn uniformly from --noise (0.5 to 1.0), then re-normalised: a replica's cosine
      similarity to its parent is then about 0.7 to 0.9, near the median similarity of a real chunk
      to its nearest real neighbour (both are printed). The real vectors are kept under
      var/bench/ for the next load.
  Loaded with COPY (psycopg `cursor.copy`; documents as text, chunks binary) with every index in
  place, as ingestion leaves it, then VACUUM (ANALYZE), as autovacuum leaves it soon after. --keep leaves the collection for the next run, which
  reuses it when it holds the asked number of chunks.
Visibility: a benchmark agent in a group the collection is shared with (the group path of the
visibility filter; the admin path skips it).
Queries: --queries questions, half from faq/queries.jsonl and half from covidqa_dev/questions.jsonl
(evenly spaced). For each, in rotating order, timed by `hybrid_search`'s own `sql_ms` (its SQL
statements only; the query embedding, which it computes on each call, is not counted):
  hybrid: `hybrid_search(k=10)` as the application calls it: dense and full-text legs, fused,
          the first 30 reranked (`chatbot.retrieval.rerank`, in Python after the statement);
  fused:  the same with `rerank=False`: the fused top 10, no term counts beyond those 10;
  dense:  `hybrid_search(k=10, sparse_weight=0)`: the dense leg alone, through the HNSW index;
  text:   `hybrid_search(k=10, dense_weight=0)`: the full-text leg alone (BM25 over the postings);
  hnsw only: `hybrid` with `exact_scan_max=0`: what counting the caller's chunks costs a search
          that takes the HNSW path anyway;
  exact:  the dense-only call again inside a transaction with `SET LOCAL enable_indexscan = off`:
          HNSW serves only index scans, so Postgres computes the distance of every visible chunk
          and sorts them: a brute-force exact scan over the same rows, with the same filter.
Then the full-text leg at other numbers of postings read per query word (`term_postings`), with
its top 10's recall against reading them all. Then the same hybrid search over HTTP: `POST /api/search` through daphne on a free port, with an
API key, timed by the client (embedding, search, reranking, authentication and JSON included).
Then each stage's median: embedding, each leg alone, fusion (the fused statement beyond the two
legs), the database part (the hybrid statement), reranking, and the whole `hybrid_search` call,
each with the exact scan's time over it. Recall@10 is the share of the exact top 10 that the HNSW
top 10 found. The dense leg is then run
again at other HNSW search depths (`ef_search`) to show what recall costs. Timed with DEBUG off, as
in production, whatever the shell sets (the debug cursor's query log costs about 1.5 ms a search). The plans
of the dense statement with and without index scans are checked once (--explain prints them).
Each real chunk has ~30 noisy replicas, a tighter clustering than real text has; HNSW graphs find
such data harder to navigate, so the recall here is more likely low than high.
Small collections (--small; --only-small skips everything above): for each size N, a collection
of the first N real chunks, loaded the same way, that only a second agent sees (not the 100,000):
the dense leg and the hybrid statement as the app runs them (every visible chunk scored when
there are at most EXACT_SCAN_MAX) and forced through the HNSW index (`exact_scan_max=0`), the
full-text leg, and the recall@10 of each dense path against scoring every visible chunk. The
collections are deleted after.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import secrets
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psycopg  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth.models import Group, User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from pgvector.psycopg import register_vector  # noqa: E402

from chatbot.accounts.roles import AGENT  # noqa: E402
from chatbot.accounts.services import (  # noqa: E402
    api_key_create,
    api_key_revoke,
    roles_ensure,
    user_create,
)
from chatbot.knowledge.parsers import RawDocument, parse_location  # noqa: E402
from chatbot.knowledge.services import collection_create, source_create  # noqa: E402
from chatbot.knowledge.splitting import TextChunk, split_document  # noqa: E402
from chatbot.llm.embeddings import LocalEmbeddings, embeddings  # noqa: E402
from chatbot.models import Chunk, Collection, Document, Source  # noqa: E402
from chatbot.retrieval.search import (  # noqa: E402
    EXACT_SCAN_MAX,
    HNSW_EF_SEARCH,
    TERM_POSTINGS,
    SearchResult,
    hybrid_search,
)
from chatbot.retrieval.terms import term_stats_refresh  # noqa: E402
from chatbot.runtime.embedded import ensure_services  # noqa: E402
from tests.benchmarks.servers import daphne_running, free_port  # noqa: E402

# Timed as in production, where DEBUG is off: Django's debug cursor keeps and formats every
# statement (about 1.5 ms of an 8 ms hybrid statement on a 2-core VM). The daphne it starts for
# the HTTP figures runs with DEBUG off too (servers.production_env).
settings.DEBUG = False

EVALSETS = Path("/work/shared/evalsets")
MANUAL = Path("/usr/share/doc/postgresql-doc-15/html")
COLLECTION = "bench-search (scratch)"
GROUP = "bench-search"
BENCH_USER = "bench-search"
SMALL_USER = "bench-search-small"
K = 10
WARMUP_QUERIES = 5
MODES = ("hybrid", "fused", "dense", "text", "exact", "hnsw only")
EF_SEARCHES = (40, 100, 120, 140, 200)  # hnsw.ef_search values for the dense leg
TEXT_DEPTHS = (250, 500, TERM_POSTINGS)  # postings per query word for the full-text leg
ALL_POSTINGS = 10**9


@dataclass
class RealDocument:
    source_index: int  # which input it came from: one source each
    raw: RawDocument
    chunks: list[TextChunk]
    first_vector: int  # row of its first chunk in the matrix of real vectors


@dataclass
class Layout:
    """What to load: (document, replica number, chunks kept) in order; replica 1 is the real one."""

    documents: list[RealDocument]
    rows: list[tuple[RealDocument, int, int]] = field(default_factory=list)

    @property
    def real_chunks(self) -> int:
        return sum(len(d.chunks) for d in self.documents)


# --- the data -----------------------------------------------------------------------------------


def real_documents(limit: int, seed: int) -> tuple[list[Path], list[RealDocument]]:
    """The eval sets' documents first, then PostgreSQL manual pages, until `limit` chunks."""
    candidates = [
        EVALSETS / "covidqa_dev" / "documents.jsonl",
        EVALSETS / "faq" / "documents.jsonl",
    ]
    if MANUAL.is_dir():
        candidates.append(MANUAL)
    else:
        print(f"{MANUAL} is missing (`apt-get install postgresql-doc-15`): eval-set text only")
    inputs: list[Path] = []
    documents: list[RealDocument] = []
    total = 0
    for path in candidates:
        if total >= limit:
            break
        raws = [r for r in parse_location(str(path), kind="path", log=_quiet) if not r.error]
        if path == MANUAL:
            random.Random(seed).shuffle(raws)
        added = 0
        for raw in raws:
            if total >= limit:
                break
            chunks = split_document(title=raw.title, text=raw.text, markdown=raw.markdown)
            if chunks:
                documents.append(RealDocument(len(inputs), raw, chunks, total))
                total += len(chunks)
                added += 1
        if added:
            inputs.append(path)
    return inputs, documents


def _quiet(level: str, message: str) -> None:
    del level, message


def plan_layout(documents: list[RealDocument], target: int) -> Layout:
    layout = Layout(documents=documents)
    layout.rows = [(d, 1, len(d.chunks)) for d in documents]
    total, replica = layout.real_chunks, 2
    while total < target:
        for document in documents:
            if total >= target:
                break
            count = min(len(document.chunks), target - total)
            layout.rows.append((document, replica, count))
            total += count
        replica += 1
    return layout


def real_vectors(texts: list[str]) -> np.ndarray:
    """The model's vectors for the real chunks, kept under var/ for the next load."""
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    cache = Path(settings.VAR_DIR) / "bench" / f"search-vectors-{digest}.npy"
    if cache.exists():
        print(f"real chunks' vectors read from {cache}")
        return np.load(cache)
    started = time.perf_counter()
    vectors = np.asarray(LocalEmbeddings().embed_documents(texts), dtype=np.float32)
    print(f"embedded them in {time.perf_counter() - started:.1f} s")
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    return vectors


def synthetic_vectors(
    real: np.ndarray, layout: Layout, rng: np.random.Generator, noise_norm: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """One vector per replica chunk, in layout order, and the row of its parent in `real`."""
    parents = np.array(
        [
            doc.first_vector + i
            for doc, replica, count in layout.rows
            if replica > 1
            for i in range(count)
        ],
        dtype=np.int64,
    )
    dim = real.shape[1]
    covariance = np.cov(real.astype(np.float64), rowvar=False)
    shape = np.linalg.cholesky(covariance + 1e-9 * np.eye(dim))
    unit = 1 / np.sqrt(np.trace(covariance))  # noise drawn this way has an expected norm of 1
    out = np.empty((len(parents), dim), dtype=np.float32)
    for start in range(0, len(parents), 10_000):
        rows = parents[start : start + 10_000]
        noise = rng.standard_normal((len(rows), dim)) @ shape.T
        noise *= unit * rng.uniform(*noise_norm, size=(len(rows), 1))
        vectors = real[rows] + noise
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        out[start : start + len(rows)] = vectors
    return out, parents


def similarity_figures(real: np.ndarray, synthetic: np.ndarray, parents: np.ndarray) -> str:
    sample = real[: min(len(real), 5000)]
    similarities = sample @ real.T
    np.fill_diagonal(similarities, -1.0)
    nearest = float(np.median(similarities.max(axis=1)))
    to_parent = np.sum(synthetic * real[parents], axis=1)
    low, mid, high = np.percentile(to_parent, [5, 50, 95])
    return (
        f"median similarity of a real chunk to its nearest real neighbour {nearest:.2f}; "
        f"of a synthetic chunk to its parent {mid:.2f} (5-95%: {low:.2f}-{high:.2f})"
    )


def marker(args: argparse.Namespace) -> str:
    # Which real text there was: without the PostgreSQL manual the same arguments load only the
    # eval sets' chunks, and a kept collection from such a run must not be reused for one with it.
    text = "eval sets and the PostgreSQL manual" if MANUAL.is_dir() else "eval sets only"
    return (
        f"Scratch data of bench_search.py: --chunks {args.chunks} --real {args.real} "
        f"--seed {args.seed} --noise {args.noise[0]},{args.noise[1]}; real text: {text}"
    )


def _raw_connection() -> psycopg.Connection[Any]:
    """A connection of our own for COPY, so pgvector's adapters stay off Django's."""
    params = connection.get_connection_params()
    for key in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(key, None)
    return psycopg.connect(**params)


def load(
    collection: Collection,
    sources: list[Source],
    layout: Layout,
    real: np.ndarray,
    synthetic: np.ndarray,
) -> None:
    now = datetime.now(UTC)
    with _raw_connection() as conn:  # one transaction, committed on leaving
        register_vector(conn)
        with conn.cursor() as cursor:
            started = time.perf_counter()
            with cursor.copy(
                "COPY chatbot_document (source_id, collection_id, external_id, title, url,"
                " metadata, content_hash, index_signature, status, error, chunk_count,"
                " updated_at) FROM STDIN"
            ) as copy:
                for document, replica, count in layout.rows:
                    raw = document.raw
                    copy.write_row(
                        (
                            sources[document.source_index].pk,
                            collection.pk,
                            _external_id(raw, replica),
                            raw.title,
                            raw.url[:1000],
                            json.dumps(raw.metadata),
                            "",
                            "",
                            Document.Status.OK,
                            "",
                            count,
                            now,
                        )
                    )
            cursor.execute(
                "SELECT source_id, external_id, id FROM chatbot_document WHERE collection_id = %s",
                [collection.pk],
            )
            ids = {(source_id, external_id): pk for source_id, external_id, pk in cursor}
            documents_s = time.perf_counter() - started

            started = time.perf_counter()
            with cursor.copy(
                "COPY chatbot_chunk (document_id, collection_id, ordinal, heading, text, embedding,"
                " valid_from) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                # valid_from: the collection's first version (the chunk is current, valid_to null).
                copy.set_types(["int8", "int8", "int4", "varchar", "text", "vector", "int4"])
                next_synthetic = 0
                for document, replica, count in layout.rows:
                    key = (sources[document.source_index].pk, _external_id(document.raw, replica))
                    for ordinal, chunk in enumerate(document.chunks[:count]):
                        if replica == 1:
                            vector = real[document.first_vector + ordinal]
                        else:
                            vector = synthetic[next_synthetic]
                            next_synthetic += 1
                        copy.write_row(
                            (ids[key], collection.pk, ordinal, chunk.heading, chunk.text, vector, 0)
                        )
            chunks_s = time.perf_counter() - started
    started = time.perf_counter()
    with connection.cursor() as cursor:
        # As autovacuum leaves a knowledge base some minutes after an ingestion: statistics, and
        # the pages marked all-visible, so the postings' index-only scans skip the heap. Straight
        # after the COPY the database part measured 23-25 ms against 13 ms once settled.
        for table in ("chatbot_chunk", "chatbot_posting", "chatbot_document", "chatbot_source"):
            cursor.execute(f"VACUUM (ANALYZE) {table}")
    print(
        f"loaded {len(layout.rows)} documents in {documents_s:.1f} s and their chunks in "
        f"{chunks_s:.1f} s (COPY, indexes updated as rows arrive); "
        f"VACUUM (ANALYZE) {time.perf_counter() - started:.1f} s"
    )


def _external_id(raw: RawDocument, replica: int) -> str:
    return raw.external_id if replica == 1 else f"{raw.external_id}~{replica}"


def drop(collection_id: int) -> None:
    """Delete in SQL: Django's cascade would load 100,000 chunk rows into Python first."""
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM chatbot_chunk WHERE collection_id = %s", [collection_id])
        cursor.execute("DELETE FROM chatbot_document WHERE collection_id = %s", [collection_id])
    Collection.objects.filter(pk=collection_id).delete()
    deleted_s = time.perf_counter() - started
    started = time.perf_counter()
    with connection.cursor() as cursor:
        # The HNSW index keeps deleted rows until a vacuum; the next run should not meet them.
        cursor.execute("VACUUM (ANALYZE) chatbot_chunk")
    print(
        f"scratch data deleted ({deleted_s:.1f} s) and chatbot_chunk vacuumed "
        f"({time.perf_counter() - started:.1f} s)"
    )


def prepare(args: argparse.Namespace, group: Group) -> Collection:
    """The scratch collection: the one a --keep run left when it fits, or a fresh load."""
    previous = Collection.objects.filter(name=COLLECTION).first()
    if previous is not None:
        wanted = marker(args)
        if (
            previous.description == wanted
            and Chunk.objects.filter(collection=previous).count() == args.chunks
        ):
            print(f"reusing the scratch collection: {previous.description}")
            previous.groups.add(group)
            refresh_term_stats()
            return previous
        drop(previous.pk)

    started = time.perf_counter()
    inputs, documents = real_documents(min(args.real, args.chunks), args.seed)
    layout = plan_layout(documents, args.chunks)
    texts = [c.embedding_text() for d in documents for c in d.chunks]
    print(
        f"{len(documents)} real documents, {len(texts)} chunks from "
        f"{', '.join(str(p) for p in inputs)} (parsed and split in "
        f"{time.perf_counter() - started:.1f} s)"
    )
    real = real_vectors(texts)
    synthetic, parents = synthetic_vectors(
        real, layout, np.random.default_rng(args.seed), args.noise
    )
    print(f"{len(synthetic)} synthetic chunks: " + similarity_figures(real, synthetic, parents))

    collection = collection_create(name=COLLECTION, description=marker(args), groups=[group])
    try:
        sources = scratch_sources(collection, inputs, "bench")
        load(collection, sources, layout, real, synthetic)
        refresh_term_stats()
    except BaseException:
        drop(collection.pk)
        raise
    return collection


def scratch_sources(collection: Collection, inputs: list[Path], label: str) -> list[Source]:
    """One source per input, marked done (load() writes their documents and chunks)."""
    sources = [
        source_create(
            collection=collection,
            kind=Source.Kind.PATH,
            location=str(path),
            name=f"{label}: {path.name}",
            queue=False,
        )
        for path in inputs
    ]
    Source.objects.filter(collection=collection).update(status=Source.Status.DONE)
    return sources


def refresh_term_stats() -> None:
    """What ingestion does after storing chunks: recount the lexemes the reranker weighs."""
    started = time.perf_counter()
    lexemes = term_stats_refresh()
    print(f"term statistics: {lexemes} lexemes recounted in {time.perf_counter() - started:.1f} s")


# --- the measurement ----------------------------------------------------------------------------


def questions(count: int) -> list[str]:
    def read(path: Path, key: str) -> list[str]:
        with path.open() as lines:
            return [json.loads(line)[key] for line in lines if line.strip()]

    def spaced(items: list[str], n: int) -> list[str]:
        n = min(n, len(items))
        return [items[i * len(items) // n] for i in range(n)]

    faq = spaced(read(EVALSETS / "faq" / "queries.jsonl", "query"), count - count // 2)
    covid = spaced(read(EVALSETS / "covidqa_dev" / "questions.jsonl", "question"), count // 2)
    mixed = [q for pair in zip(faq, covid, strict=False) for q in pair]
    return mixed + faq[len(covid) :] + covid[len(faq) :]


def search(mode: str, user: User, query: str) -> SearchResult:
    if mode == "hybrid":
        return hybrid_search(user=user, query=query, k=K)
    if mode == "fused":
        return hybrid_search(user=user, query=query, k=K, rerank=False)
    if mode == "dense":
        return hybrid_search(user=user, query=query, k=K, sparse_weight=0)
    if mode == "text":
        return hybrid_search(user=user, query=query, k=K, dense_weight=0)
    if mode == "hnsw only":
        return hybrid_search(user=user, query=query, k=K, exact_scan_max=0)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_indexscan = off")
        return hybrid_search(user=user, query=query, k=K, sparse_weight=0)


@contextmanager
def statements() -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements (and parameters) run inside the block."""
    seen: list[tuple[str, Any]] = []

    def wrapper(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        seen.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield seen


def explain(mode: str, user: User, query: str) -> str:
    """EXPLAIN ANALYZE of the search statement as `search(mode)` runs it, settings included."""
    with statements() as seen:
        search(mode, user, query)
    run = [s for s in seen if s[0].lstrip().startswith(("SET LOCAL", "SELECT set_config", "WITH"))]
    # hybrid_search sends the HNSW settings and its statement in one execute, ";\n" between.
    parts = [(part, params) for sql, params in run for part in sql.split(";\n")]
    with transaction.atomic(), connection.cursor() as cursor:
        for sql, params in parts[:-1]:
            cursor.execute(sql, params)
        sql, params = parts[-1]
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def plan_summary(plan: str) -> str:
    scans = [
        line.strip().lstrip("-> ").split("  (")[0]
        for line in plan.splitlines()
        if " on chatbot_chunk c" in line
    ]
    total = next((line for line in plan.splitlines() if line.startswith("Execution Time")), "")
    jit = next(
        (line.strip() for line in plan.splitlines() if line.strip().startswith("Functions:")), ""
    )
    summary = f"{'; '.join(scans) or 'no scan of chatbot_chunk c?'}; {total}"
    return summary + (f"; JIT {jit}" if jit else "")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench(user: User, queries: list[str], show_plans: bool) -> None:
    warmup = queries[:WARMUP_QUERIES]
    for query in warmup:  # loads the model, and the table and index pages into memory
        for mode in MODES:
            search(mode, user, query)

    plans = {mode: explain(mode, user, queries[0]) for mode in ("dense", "exact")}
    uses_hnsw = {mode: "chunk_embedding_hnsw" in plan for mode, plan in plans.items()}
    print(
        f"dense plan: HNSW index {'used' if uses_hnsw['dense'] else 'NOT USED'}: "
        f"{plan_summary(plans['dense'])}"
    )
    print(
        f"exact plan: HNSW index {'used (the baseline is wrong!)' if uses_hnsw['exact'] else 'not used'}: "
        f"{plan_summary(plans['exact'])}"
    )
    if show_plans:
        for mode, plan in plans.items():
            print(f"\n--- {mode}\n" + re.sub(r"'\[[^\]]{200,}\]'", "'[...]'", plan))

    sql_ms: dict[str, list[float]] = {mode: [] for mode in MODES}
    embed_ms: list[float] = []
    rerank_ms: list[float] = []
    total_ms: list[float] = []
    top: dict[str, list[list[int]]] = {mode: [] for mode in MODES}
    for i, query in enumerate(queries):
        shift = i % len(MODES)  # rotate the order, so no mode always runs first
        for mode in MODES[shift:] + MODES[:shift]:
            result = search(mode, user, query)
            sql_ms[mode].append(result.sql_ms)
            if mode != "text":  # the text leg alone embeds nothing
                embed_ms.append(result.embed_ms)
            top[mode].append([hit.chunk_id for hit in result.hits])
            if mode == "hybrid":
                rerank_ms.append(result.rerank_ms)
                total_ms.append(result.duration_ms)
    report(sql_ms, embed_ms, recall(top["dense"], top["exact"]), len(queries))
    stages(sql_ms, embed_ms, rerank_ms, total_ms)

    # How far the HNSW scan looks: hnsw.ef_search = max(candidates, ef_search).
    print(f"\ndense leg by HNSW search depth (`ef_search`; {HNSW_EF_SEARCH} is the default)")
    depths = {HNSW_EF_SEARCH: (sql_ms["dense"], recall(top["dense"], top["exact"]))}
    for depth in EF_SEARCHES:
        if depth == HNSW_EF_SEARCH:
            continue
        times, found = [], []
        for query in queries:
            result = hybrid_search(user=user, query=query, k=K, sparse_weight=0, ef_search=depth)
            times.append(result.sql_ms)
            found.append([hit.chunk_id for hit in result.hits])
        depths[depth] = (times, recall(found, top["exact"]))
    for depth, (times, recalls) in sorted(depths.items()):
        print(
            f"ef_search {depth:4d}: p50 {percentile(times, 0.5):6.1f} ms   "
            f"p95 {percentile(times, 0.95):6.1f} ms   recall@{K} {statistics.mean(recalls):.3f}"
        )


def text_leg_depths(user: User, queries: list[str]) -> None:
    """The full-text leg reads the first `term_postings` postings of each query word (highest
    BM25 impact first): its time and its top 10's recall against reading every posting."""
    print(f"\nfull-text leg by postings read per query word ({TERM_POSTINGS} is the default)")
    runs: dict[int, tuple[list[float], list[list[int]]]] = {}
    for depth in (*TEXT_DEPTHS, ALL_POSTINGS):
        times, found = [], []
        for query in queries:
            result = hybrid_search(user=user, query=query, k=K, dense_weight=0, term_postings=depth)
            times.append(result.sql_ms)
            found.append([hit.chunk_id for hit in result.hits])
        runs[depth] = (times, found)
    every = runs[ALL_POSTINGS][1]
    for depth, (times, found) in runs.items():
        label = "all" if depth == ALL_POSTINGS else str(depth)
        print(
            f"postings {label:>5}: p50 {percentile(times, 0.5):6.1f} ms   "
            f"p95 {percentile(times, 0.95):6.1f} ms   "
            f"recall@{K} against all {statistics.mean(recall(found, every)):.3f}"
        )


SMALL_MODES: dict[str, Callable[[User, str], SearchResult]] = {
    "dense": lambda user, query: search("dense", user, query),
    "dense, HNSW": lambda user, query: hybrid_search(
        user=user, query=query, k=K, sparse_weight=0, exact_scan_max=0
    ),
    "text": lambda user, query: search("text", user, query),
    "hybrid": lambda user, query: search("hybrid", user, query),
    "hybrid, HNSW": lambda user, query: hybrid_search(
        user=user, query=query, k=K, exact_scan_max=0
    ),
    # The reference for recall: every visible chunk scored, whatever their number.
    "dense, exact": lambda user, query: hybrid_search(
        user=user, query=query, k=K, sparse_weight=0, exact_scan_max=10**9
    ),
}


def small_collections(args: argparse.Namespace, queries: list[str], sizes: list[int]) -> None:
    """Search by someone who sees only a small collection while the 100,000 chunks they may not
    see sit in the same table: a collection of the first N real chunks (copies, in a source of
    its own), shared with a group whose only member is a second agent. For each N, SQL p50 and
    p95 of: the dense leg and the hybrid statement as the app runs them (which scores every
    visible chunk when there are at most EXACT_SCAN_MAX) and forced through the HNSW index
    (`exact_scan_max=0`, the only path before), the full-text leg, and the dense leg scoring
    every visible chunk whatever their number; then the recall@10 of the dense leg as the app
    runs it, and through the HNSW index, against that exact one. Every collection made here
    is deleted at the end."""
    inputs, documents = real_documents(min(args.real, args.chunks), args.seed)
    real = real_vectors([c.embedding_text() for d in documents for c in d.chunks])
    user = user_create(
        username=SMALL_USER,
        password=secrets.token_urlsafe(16),
        role=AGENT,
        full_name="Bench Search (small collection)",
    )
    made: list[int] = []
    print(
        f"\nsearch by an agent who sees only a small collection, beside {args.chunks:,} "
        f"chunks they may not see (SQL p50 / p95 ms over {len(queries)} queries; the app "
        f'scores every visible chunk up to {EXACT_SCAN_MAX:,}, "HNSW" forces the index)'
    )
    print(
        f"{'visible':>8} | "
        + " | ".join(f"{mode:>15}" for mode in SMALL_MODES)
        + f" | recall@{K} dense / HNSW"
    )
    try:
        for size in sizes:
            group, _ = Group.objects.get_or_create(name=f"{GROUP}-small-{size}")
            user.groups.remove(*Group.objects.filter(name__startswith=f"{GROUP}-small-"))
            user.groups.add(group)
            collection = collection_create(
                name=f"{COLLECTION} small {size}", description="bench_search.py", groups=[group]
            )
            made.append(collection.pk)
            sources = scratch_sources(collection, inputs, "bench small")
            layout = Layout(documents=documents)
            left = size
            for document in documents:
                if left <= 0:
                    break
                layout.rows.append((document, 1, min(left, len(document.chunks))))
                left -= len(document.chunks)
            load(collection, sources, layout, real, np.empty((0, real.shape[1]), np.float32))
            refresh_term_stats()
            modes = list(SMALL_MODES)
            for query in queries[:WARMUP_QUERIES]:
                for mode in modes:
                    SMALL_MODES[mode](user, query)
            sql_ms: dict[str, list[float]] = {mode: [] for mode in modes}
            top: dict[str, list[list[int]]] = {mode: [] for mode in modes}
            for i, query in enumerate(queries):
                shift = i % len(modes)
                for mode in modes[shift:] + modes[:shift]:
                    result = SMALL_MODES[mode](user, query)
                    sql_ms[mode].append(result.sql_ms)
                    top[mode].append([hit.chunk_id for hit in result.hits])
            visible = Chunk.objects.filter(collection=collection).count()
            cells = [
                f"{percentile(sql_ms[m], 0.5):6.1f} / {percentile(sql_ms[m], 0.95):6.1f}"
                for m in modes
            ]
            print(
                f"{visible:>8,} | "
                + " | ".join(f"{cell:>15}" for cell in cells)
                + f" | {statistics.mean(recall(top['dense'], top['dense, exact'])):.3f} / "
                f"{statistics.mean(recall(top['dense, HNSW'], top['dense, exact'])):.3f}"
            )
            print(f"    dense plan: {plan_summary(explain('dense', user, queries[0]))}")
    finally:
        for pk in made:
            drop(pk)
        user.delete()


def over_http(user: User, queries: list[str]) -> None:
    """`POST /api/search` (k=10) through daphne on a free port, as a program calls it: an API key,
    one kept-alive connection, timed from sending the request to having read the response. Each
    call embeds its query, searches and reranks, as the app does; the server's own
    `duration_ms` (hybrid_search in all) is printed beside it."""
    key = api_key_create(user=user, name="bench-search")
    port = free_port()
    try:
        with (
            daphne_running(port),
            httpx.Client(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {key.plaintext}"},
                timeout=60,
            ) as client,
        ):

            def ask(query: str) -> tuple[float, float]:
                started = time.perf_counter()
                response = client.post("/api/search", json={"query": query, "k": K})
                elapsed = (time.perf_counter() - started) * 1000
                response.raise_for_status()
                return elapsed, float(response.json()["duration_ms"])

            for query in queries[:WARMUP_QUERIES]:  # the server's model, pages, connection
                ask(query)
            timings = [ask(query) for query in queries]
    finally:
        api_key_revoke(key=key.key)
    http = [t for t, _ in timings]
    server = [d for _, d in timings]
    print(f"\nPOST /api/search over HTTP (daphne, API key, k={K}, {len(queries)} queries)")
    print(
        f"round trip p50 {percentile(http, 0.5):6.1f} ms   p95 {percentile(http, 0.95):6.1f} ms"
        f"   (of which hybrid_search p50 {percentile(server, 0.5):.1f} ms)"
    )


def recall(found: list[list[int]], exact: list[list[int]]) -> list[float]:
    """Per query, the share of the exact top k that the other search found."""
    return [len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True) if e]


def report(
    sql_ms: dict[str, list[float]], embed_ms: list[float], recalls: list[float], queries: int
) -> None:
    labels = {
        "hybrid": "hybrid_search (as the app)",
        "fused": "fused, not reranked",
        "dense": "dense leg only (HNSW)",
        "text": "full-text leg only",
        "exact": "exact scan (no index)",
        "hnsw only": "hybrid, exact_scan_max=0",
    }
    print(f"\nSQL time per search over {queries} queries, k={K} (query embedding not included)")
    for mode in MODES:
        values = sql_ms[mode]
        print(
            f"{labels[mode]:<30} p50 {percentile(values, 0.5):7.1f} ms   "
            f"p95 {percentile(values, 0.95):7.1f} ms"
        )
    for q, name in ((0.5, "p50"), (0.95, "p95")):
        exact = percentile(sql_ms["exact"], q)
        print(
            f"speed-up over the exact scan, {name}: dense leg "
            f"{exact / percentile(sql_ms['dense'], q):5.1f}x, hybrid "
            f"{exact / percentile(sql_ms['hybrid'], q):5.1f}x"
        )
    print(
        f"recall@{K} of the HNSW dense top {K} against the exact top {K}: "
        f"mean {statistics.mean(recalls):.3f}, {sum(r == 1 for r in recalls)}/{len(recalls)} "
        f"queries complete, worst {min(recalls):.1f}"
    )
    print(f"(embedding one query, not included above: median {statistics.median(embed_ms):.1f} ms)")


def stages(
    sql_ms: dict[str, list[float]],
    embed_ms: list[float],
    rerank_ms: list[float],
    total_ms: list[float],
) -> None:
    """Where one search's time goes, stage by stage (p50 over the queries), against the exact
    scan. The legs are timed alone; fusion is what the fused statement costs beyond them (it
    also reads the term counts the reranker needs); the hybrid statement, which returns the
    reranker's candidates, is the database part of a search."""
    p50 = {mode: percentile(values, 0.5) for mode, values in sql_ms.items()}
    rows = [
        ("embed the query", percentile(embed_ms, 0.5)),
        ("dense leg (HNSW)", p50["dense"]),
        ("full-text leg", p50["text"]),
        ("fuse (fused - dense - text)", p50["fused"] - p50["dense"] - p50["text"]),
        ("database part (hybrid statement)", p50["hybrid"]),
        ("rerank (Python)", percentile(rerank_ms, 0.5) if rerank_ms else 0.0),
        ("hybrid_search in all", percentile(total_ms, 0.5) if total_ms else 0.0),
    ]
    print(f"\nstages, p50 ms (exact scan's SQL: {p50['exact']:.1f} ms)")
    for label, value in rows:
        ratio = p50["exact"] / value if value > 0 else float("inf")
        print(f"{label:<34} {value:7.1f} ms   exact scan / stage {ratio:6.1f}x")


def _noise(text: str) -> tuple[float, float]:
    low, _, high = text.partition(",")
    try:
        return float(low), float(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError("give the noise norm range as LOW,HIGH") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--chunks", type=int, default=100_000, help="chunks in the collection")
    parser.add_argument("--real", type=int, default=3_000, help="of which embedded real chunks")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--noise",
        type=_noise,
        default=(0.5, 1.0),
        help="range of the synthetic vectors' noise norm, as LOW,HIGH (default 0.5,1.0)",
    )
    parser.add_argument("--keep", action="store_true", help="leave the data for the next run")
    parser.add_argument("--explain", action="store_true", help="print the two query plans")
    parser.add_argument(
        "--small",
        default="100,1000,3000",
        help="sizes of the small collections searched by someone who sees only them "
        "(comma-separated chunk counts; empty: skip)",
    )
    parser.add_argument(
        "--only-small", action="store_true", help="measure only the small collections"
    )
    args = parser.parse_args()
    sizes = [int(size) for size in args.small.split(",") if size.strip()]
    warnings.filterwarnings("ignore", message=".*looks like you're using an HTML parser.*")

    ensure_services()
    call_command("migrate", interactive=False, verbosity=0)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the start")
    roles_ensure()
    user = user_create(
        username=BENCH_USER,
        password=secrets.token_urlsafe(16),
        role=AGENT,
        full_name="Bench Search",
    )
    group, _ = Group.objects.get_or_create(name=GROUP)
    user.groups.add(group)
    collection = prepare(args, group)
    try:
        embeddings().embed_query("warm up")
        asked = questions(args.queries)
        if not args.only_small:
            bench(user, asked, args.explain)
            text_leg_depths(user, asked)
            over_http(user, asked)
        if sizes:
            small_collections(args, asked, sizes)
    finally:
        if args.keep:
            print(
                f"kept the scratch collection {COLLECTION!r} (id {collection.pk}) for the next run"
            )
        else:
            drop(collection.pk)


if __name__ == "__main__":
    main()
