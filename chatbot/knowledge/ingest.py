"""The ingestion pipeline: parse a source's files, split them, embed the chunks, store them, and
record progress the pages and `manage.py ingest` show.

Ingestion is idempotent and resumable. Each document is written in its own transaction (its old
chunks put away, its new chunks inserted, its content hash saved last), so a worker killed mid-job
leaves every document either fully old or fully new; running the source again skips the documents
whose hash and chunk count already match and redoes the rest, with no duplicate chunks. A document
whose chunks were made with other splitting settings or by another embedding model
(`index_signature`) is re-indexed even when its text is unchanged: mixing two models' vectors in
one index, or keeping 200-word chunks after the setting says 80, would fail silently.

Knowledge-base versions: every write that changes a collection's chunks (one document stored or
failed, the documents gone from the source) moves the collection's version on in its own
transaction and stamps the chunks with it: new chunks get `valid_from`, the chunks put away get
`valid_to` (and `retired_at`). So a chunk was current for the versions valid_from <= V < valid_to,
and a search "as of" a version (`chatbot.retrieval.search`) reads exactly what a search read while
the collection was at it. A run that changes nothing moves no version.

Past answers keep their sources, and past versions stay readable: the old chunks of a changed (or
vanished, or now unreadable) document are retired, not deleted, and search and the document page
leave them out. Retired chunks older than KNOWLEDGE_VERSIONS_KEEP_DAYS are deleted when no citation
points at them (`versions_prune`: at the start of each run of the source, and daily for all); a
cited one is kept as long as its citation.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from langchain_core.embeddings import Embeddings

from chatbot.knowledge.parsers import RawDocument, SourceUnavailable, parse_location
from chatbot.knowledge.services import LOG_KEEP, collection_changed, collection_version_next
from chatbot.knowledge.splitting import TextChunk, split_document, splitting_signature
from chatbot.llm.embeddings import model_digest
from chatbot.models import Chunk, Citation, Document, Source
from chatbot.retrieval.terms import term_stats_refresh

logger = logging.getLogger(__name__)

PROGRESS_EVERY_DOCUMENTS = 25  # unchanged documents between two progress writes
MAX_URL = 1000
TITLE_BATCH = 256  # titles per call to the model when filling missing title vectors

ProgressFn = Callable[[Source], None]


def index_signature() -> str:
    """What made a document's chunks and vectors besides its content: the splitter's format and
    sizes and the embedding model's files. Stored with each document written."""
    digest = hashlib.sha256(f"{splitting_signature()}|{model_digest()}".encode())
    return digest.hexdigest()[:32]


def content_hash(raw: RawDocument) -> str:
    digest = hashlib.sha256()
    for part in (raw.title, raw.text, raw.url):
        digest.update(part.encode())
        digest.update(b"\x00")
    return digest.hexdigest()


@dataclass
class _Pending:
    raw: RawDocument
    hash: str
    chunks: list[TextChunk]


@dataclass
class _Run:
    """One ingestion of one source: its progress, written to the row in small updates."""

    source: Source
    on_progress: ProgressFn | None
    errors: int = 0
    changed: bool = False  # a write of this run moved the collection's version
    signature: str = ""  # index_signature(), read once a run

    def note(self, level: str, message: str) -> None:
        self.source.log.append(
            {"time": timezone.now().isoformat(), "level": level, "message": message}
        )
        del self.source.log[:-LOG_KEEP]

    def save(self, **fields: object) -> None:
        for name, value in fields.items():
            setattr(self.source, name, value)
        names = [*fields, "documents_done", "chunks_done", "log"]
        values = {n: getattr(self.source, n) for n in dict.fromkeys(names)}
        # update(), not save(): an admin may disable or rename the source meanwhile.
        Source.objects.filter(pk=self.source.pk).update(**values)
        if self.on_progress is not None:
            self.on_progress(self.source)

    def advance(self, *, documents: int, chunks: int) -> None:
        self.source.documents_done += documents
        self.source.chunks_done += chunks


def source_ingest(
    *,
    source_id: int,
    embedder: Embeddings | None = None,
    on_progress: ProgressFn | None = None,
) -> Source:
    """Bring the source's documents and chunks in line with its files. Safe to run again."""
    source = Source.objects.select_related("collection").get(pk=source_id)
    run = _Run(source=source, on_progress=on_progress)
    if not source.enabled:
        run.note("warning", "The source is disabled; nothing was ingested.")
        run.save()
        return source
    source.documents_done = source.chunks_done = 0
    run.note("info", f"Ingestion started: {source.location}")
    run.save(status=Source.Status.RUNNING, error="", documents_total=0, chunks_total=0)
    try:
        _ingest(run, embedder)
    except SourceUnavailable as exc:
        _fail(run, str(exc))
    except Exception as exc:
        logger.exception("ingestion of source %s failed", source_id)
        _fail(run, f"Ingestion stopped by an unexpected error: {exc}")
    if run.changed:
        # Each write moved the version already; the answers cached from the old ones go too.
        collection_changed(collection_id=source.collection_id)
    return source


def _fail(run: _Run, message: str) -> None:
    run.note("error", message)
    run.save(status=Source.Status.FAILED, error=message, last_ingested_at=timezone.now())


# --- chunks past answers cite ---------------------------------------------------------------------


def _uncited() -> Q:
    return ~Q(Exists(Citation.objects.filter(chunk_id=OuterRef("pk"))))


def _version_next(run: _Run) -> int:
    run.changed = True
    return collection_version_next(collection_id=run.source.collection_id)


def _chunks_put_away(chunks: QuerySet[Chunk], *, version: int) -> None:
    """Retire the current chunks: current up to, not including, `version`."""
    chunks.filter(retired_at__isnull=True).update(retired_at=timezone.now(), valid_to=version)


@transaction.atomic
def _documents_put_away(run: _Run, document_ids: list[int]) -> None:
    """Documents gone from the source: retired with their chunks, which stay readable as of the
    versions before (and for the past answers that cite them) until pruned."""
    chunks = Chunk.objects.filter(document_id__in=document_ids)
    if chunks.filter(retired_at__isnull=True).exists():
        _chunks_put_away(chunks, version=_version_next(run))
    gone = Document.objects.filter(pk__in=document_ids)
    has_chunks = Exists(Chunk.objects.filter(document_id=OuterRef("pk")))
    gone.filter(~has_chunks).delete()
    kept = gone.filter(has_chunks).update(
        status=Document.Status.RETIRED, content_hash="", error="", chunk_count=0
    )
    removed = len(document_ids)
    run.note("info", f"Removed {removed} documents no longer in the source.")
    if kept:
        run.note("info", f"Kept {kept} of them for past versions and the answers that cite them.")


def versions_kept_since() -> datetime:
    """Chunks retired before this moment may have been pruned: the knowledge base as of a
    version older than it may miss passages (`observability.replay` refuses such turns)."""
    return timezone.now() - timedelta(days=settings.KNOWLEDGE_VERSIONS_KEEP_DAYS)


@transaction.atomic
def versions_prune(*, source_id: int | None = None) -> int:
    """Delete the chunks retired before the kept window (KNOWLEDGE_VERSIONS_KEEP_DAYS) that no
    answer cites any more, then the retired documents left empty; of one source, or of all.
    Returns how many chunks were deleted. Searches as of the versions they were current in lose
    them, which is why replays of turns older than the window are refused."""
    chunks = Chunk.objects.filter(retired_at__lt=versions_kept_since()).filter(_uncited())
    documents = Document.objects.filter(status=Document.Status.RETIRED)
    if source_id is not None:
        chunks = chunks.filter(document__source_id=source_id)
        documents = documents.filter(source_id=source_id)
    _, deleted = chunks.delete()
    documents.filter(~Exists(Chunk.objects.filter(document_id=OuterRef("pk")))).delete()
    return deleted.get(Chunk._meta.label, 0)


# --- the run ---------------------------------------------------------------------------------------


def _dedupe(run: _Run, raws: list[RawDocument]) -> list[RawDocument]:
    seen: set[str] = set()
    unique: list[RawDocument] = []
    for raw in raws:
        if raw.external_id in seen:
            run.note("warning", f"Duplicate document id {raw.external_id!r}: kept the first.")
            continue
        seen.add(raw.external_id)
        unique.append(raw)
    return unique


def _ingest(run: _Run, embedder: Embeddings | None) -> None:
    source = run.source
    raws = _dedupe(run, parse_location(source.location, kind=source.kind, log=run.note))
    versions_prune(source_id=source.pk)
    existing = {
        d.external_id: d
        for d in Document.objects.filter(source=source).annotate(
            stored=Count("chunks", filter=Q(chunks__retired_at__isnull=True))
        )
    }
    keys = {r.external_id for r in raws}
    vanished = [
        d.pk
        for key, d in existing.items()
        if key not in keys and d.status != Document.Status.RETIRED
    ]
    if vanished:
        _documents_put_away(run, vanished)

    run.signature = index_signature()
    unchanged: list[Document] = []
    work: list[_Pending] = []
    broken: list[RawDocument] = []
    reindexed = 0
    for raw in raws:
        if raw.error:
            broken.append(raw)
            continue
        digest = content_hash(raw)
        old = existing.get(raw.external_id)
        if (
            old is not None
            and old.status == Document.Status.OK
            and old.content_hash == digest
            and old.chunk_count > 0
            and old.stored == old.chunk_count
        ):
            if old.index_signature in ("", run.signature):
                unchanged.append(old)
                refresh: dict[str, object] = {}
                if old.metadata != raw.metadata:
                    refresh["metadata"] = raw.metadata
                if not old.index_signature:
                    refresh["index_signature"] = run.signature
                if refresh:
                    Document.objects.filter(pk=old.pk).update(**refresh)
                continue
            reindexed += 1
        chunks = split_document(title=raw.title, text=raw.text, markdown=raw.markdown)
        if not chunks:
            broken.append(_with_error(raw, "The document has no text to index."))
            continue
        work.append(_Pending(raw=raw, hash=digest, chunks=chunks))

    total_chunks = sum(d.chunk_count for d in unchanged) + sum(len(p.chunks) for p in work)
    again = (
        f"{reindexed} indexed again (unchanged, but their passages were made with other chunk "
        "settings or by another embedding model), "
        if reindexed
        else ""
    )
    run.note(
        "info",
        f"{len(raws)} documents: {len(work) - reindexed} new or changed, {again}"
        f"{len(unchanged)} unchanged, {len(broken)} with errors.",
    )
    run.save(documents_total=len(raws), chunks_total=total_chunks)

    for raw in broken:
        _document_fail(run, raw)
    for i, same in enumerate(unchanged, start=1):
        run.advance(documents=1, chunks=same.chunk_count)
        if i % PROGRESS_EVERY_DOCUMENTS == 0:
            run.save()
    run.save()
    if embedder is None:
        from chatbot.llm.embeddings import LocalEmbeddings

        embedder = LocalEmbeddings()
    _titles_embed([d for d in unchanged if d.title.strip() and d.title_embedding is None], embedder)
    _embed_and_store(run, work, embedder)
    if work or vanished:
        # The rerank stage weighs words by how many chunks hold them: recount after a change.
        term_stats_refresh()

    run.note(
        "info",
        f"Done: {source.documents_done} documents, {source.chunks_done} chunks, "
        f"{run.errors} documents with errors.",
    )
    run.save(status=Source.Status.DONE, error="", last_ingested_at=timezone.now())


def _with_error(raw: RawDocument, error: str) -> RawDocument:
    raw.error = error
    return raw


def _titles_embed(documents: list[Document], embedder: Embeddings) -> None:
    """The title vectors of unchanged documents that have none (stored before titles were
    embedded, migration 0015 fills those too): the next run fills them, once."""
    for start in range(0, len(documents), TITLE_BATCH):
        batch = documents[start : start + TITLE_BATCH]
        vectors = embedder.embed_documents([d.title.strip() for d in batch])
        for document, vector in zip(batch, vectors, strict=True):
            Document.objects.filter(pk=document.pk).update(title_embedding=vector)


def _embed_and_store(run: _Run, work: list[_Pending], embedder: Embeddings) -> None:
    """Embed the chunks of several documents per call (the model is fastest on full batches)."""
    if not work:
        return
    flush_at = max(settings.EMBEDDING_BATCH_SIZE, 1) * 4
    batch: list[_Pending] = []
    for pending in work:
        batch.append(pending)
        if sum(len(p.chunks) for p in batch) >= flush_at:
            _flush(run, batch, embedder)
            batch = []
    if batch:
        _flush(run, batch, embedder)


def _flush(run: _Run, batch: list[_Pending], embedder: Embeddings) -> None:
    # Each document's chunks, then its title (when it has one), in one call to the model.
    texts: list[str] = []
    for pending in batch:
        texts.extend(chunk.embedding_text() for chunk in pending.chunks)
        if title := pending.raw.title.strip():
            texts.append(title)
    vectors = iter(embedder.embed_documents(texts))
    for pending in batch:
        chunk_vectors = [next(vectors) for _ in pending.chunks]
        title_vector = next(vectors) if pending.raw.title.strip() else None
        _document_store(run, pending, chunk_vectors, title_vector)
        run.advance(documents=1, chunks=len(pending.chunks))
    run.save()


def _url(run: _Run, raw: RawDocument) -> str:
    if len(raw.url) > MAX_URL:
        run.note("warning", f"{raw.external_id}: the url is too long and was dropped.")
        return ""
    return raw.url


@transaction.atomic
def _document_store(
    run: _Run, pending: _Pending, vectors: list[list[float]], title_vector: list[float] | None
) -> None:
    raw, source = pending.raw, run.source
    # The row lock makes a second worker on the same source wait, then redo this document cleanly.
    document, _ = Document.objects.select_for_update().get_or_create(
        source=source, external_id=raw.external_id, defaults={"collection": source.collection}
    )
    version = _version_next(run)
    _chunks_put_away(Chunk.objects.filter(document=document), version=version)
    Chunk.objects.bulk_create(
        Chunk(
            document=document,
            collection_id=source.collection_id,
            ordinal=ordinal,
            heading=chunk.heading,
            text=chunk.text,
            embedding=vector,
            valid_from=version,
        )
        for ordinal, (chunk, vector) in enumerate(zip(pending.chunks, vectors, strict=True))
    )
    document.collection_id = source.collection_id
    document.title = raw.title
    document.title_embedding = title_vector
    document.url = _url(run, raw)
    document.metadata = raw.metadata
    document.content_hash = pending.hash
    document.index_signature = run.signature
    document.status = Document.Status.OK
    document.error = ""
    document.chunk_count = len(pending.chunks)
    document.save()


@transaction.atomic
def _document_fail(run: _Run, raw: RawDocument) -> None:
    source = run.source
    document, _ = Document.objects.select_for_update().get_or_create(
        source=source, external_id=raw.external_id, defaults={"collection": source.collection}
    )
    chunks = Chunk.objects.filter(document=document)
    if chunks.filter(retired_at__isnull=True).exists():
        _chunks_put_away(chunks, version=_version_next(run))
    document.title = raw.title
    document.title_embedding = None
    document.url = ""
    document.metadata = raw.metadata
    document.content_hash = ""
    document.index_signature = ""
    document.status = Document.Status.ERROR
    document.error = raw.error
    document.chunk_count = 0
    document.save()
    run.errors += 1
    run.advance(documents=1, chunks=0)
    run.note("error", f"{raw.external_id}: {raw.error}")
