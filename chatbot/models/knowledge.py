from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from django.db.models.functions import MD5
from pgvector.django import HnswIndex, VectorField

from chatbot.models.compliance import regions_field

EMBEDDING_DIMENSIONS = 384  # all-MiniLM-L6-v2


class Collection(models.Model):
    """A set of sources visible to chosen groups. Its version moves with every ingestion."""

    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    groups = models.ManyToManyField(Group, blank=True, related_name="collections")
    version = models.PositiveIntegerField(default=0)
    # Its passages go only to the models a sensitivity routing rule allows for confidential data.
    confidential = models.BooleanField(default=False)
    # Its passages go only to models in these catalogue regions (empty: any); chatbot.llm.routing.
    allowed_regions = regions_field()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Source(models.Model):
    class Kind(models.TextChoices):
        UPLOAD = "upload", "Uploaded file"
        PATH = "path", "Server path"
        TICKETS = "tickets", "Past support tickets"

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting"
        RUNNING = "running", "Ingesting"
        DONE = "done", "Ingested"
        FAILED = "failed", "Failed"

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="sources")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    # A server path, or where an uploaded file was stored (under VAR_DIR/uploads).
    location = models.CharField(max_length=1000)
    enabled = models.BooleanField(default=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    documents_total = models.PositiveIntegerField(default=0)
    documents_done = models.PositiveIntegerField(default=0)
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    log = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_ingested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["collection", "name"]

    def __str__(self) -> str:
        return self.name


class Document(models.Model):
    class Status(models.TextChoices):
        OK = "ok", "Ingested"
        ERROR = "error", "Error"
        # Gone from its source, kept only for the retired chunks past answers cite.
        RETIRED = "retired", "Removed from the source"

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="documents")
    # Denormalised from the source so search filters by collection without a join.
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="documents")
    external_id = models.CharField(max_length=500)
    title = models.CharField(max_length=500, blank=True)
    url = models.URLField(max_length=1000, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    content_hash = models.CharField(max_length=64, blank=True)
    # How its chunks were made: the splitter's settings and the embedding model
    # (`chatbot.knowledge.ingest.index_signature`). A run re-indexes an unchanged document whose
    # signature differs; blank: stored before signatures were kept, taken as the current one.
    index_signature = models.CharField(max_length=64, blank=True)
    # The title on its own, embedded as the chunks are (null: no title). The rerank stage and the
    # no-answer classifier compare the question with it: a paraphrased question is closer to an
    # FAQ entry's title question than to its answer (README, "Knowledge base").
    title_embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS, null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OK)
    error = models.TextField(blank=True)
    chunk_count = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["source", "external_id"]
        constraints = [
            models.UniqueConstraint(fields=["source", "external_id"], name="one_document_per_id")
        ]

    def __str__(self) -> str:
        return self.title or self.external_id


class Chunk(models.Model):
    """A passage of a document. When its document changes or leaves the source, a chunk that a
    past answer cites is retired instead of deleted, so the answer keeps the text it was given;
    search and the document page read only current chunks (`retired_at` is null)."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="chunks")
    ordinal = models.PositiveIntegerField()
    heading = models.CharField(max_length=500, blank=True)
    text = models.TextField()
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS)
    # Kept by Postgres itself: title-weighted English full-text vector of the chunk. Search reads
    # it through `Posting`, the inverted index triggers derive from it (no GIN index needed).
    search_vector = models.GeneratedField(
        expression=SearchVector("heading", weight="A", config="english")
        + SearchVector("text", weight="B", config="english"),
        output_field=SearchVectorField(),
        db_persist=True,
    )
    # Kept by Postgres too: search returns one passage of each text (a file in two sources)
    # by comparing these 32 characters, not the TOASTed text.
    text_hash = models.GeneratedField(
        expression=MD5("text"),
        output_field=models.CharField(max_length=32),
        db_persist=True,
    )
    retired_at = models.DateTimeField(null=True, blank=True)
    # The collection versions during which the chunk was current: from `valid_from` (the version
    # its document's write made) up to, not including, `valid_to` (null: still current). A search
    # as of version V reads the chunks with valid_from <= V < valid_to.
    valid_from = models.PositiveIntegerField(default=0)
    valid_to = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["document", "ordinal"]
        constraints = [
            # Retired chunks keep their old positions beside the current ones.
            models.UniqueConstraint(
                fields=["document", "ordinal"],
                condition=models.Q(retired_at__isnull=True),
                name="one_current_chunk_per_position",
            )
        ]
        indexes = [
            # m 24, ef_construction 200 (pgvector's defaults are 16 and 64): at 100,000 chunks
            # recall@10 against an exact scan rose from 0.913 to 0.961 at the default search
            # depth for about 1 ms (tests/benchmarks/README.md, bench_search).
            HnswIndex(
                name="chunk_embedding_hnsw",
                fields=["embedding"],
                m=24,
                ef_construction=200,
                opclasses=["vector_cosine_ops"],
            ),
            models.Index(fields=["collection"]),
            # The dense leg counts a caller's current chunks, and scores them all when they are
            # few, through this (chatbot.retrieval.search, EXACT_SCAN_MAX).
            models.Index(
                fields=["collection", "id"],
                condition=models.Q(retired_at__isnull=True),
                name="chunk_current_by_collection",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.ordinal}"


class TermStat(models.Model):
    """How many current chunks hold each full-text lexeme: the document frequencies behind the
    rerank stage's BM25 and IDF-weighted coverage (`chatbot.retrieval.terms`). Recomputed from the
    chunks after each ingestion; the row with the empty lexeme counts the chunks themselves."""

    lexeme = models.TextField(primary_key=True)
    chunks = models.PositiveIntegerField()

    def __str__(self) -> str:
        return f"{self.lexeme or '(all chunks)'}: {self.chunks}"


class Posting(models.Model):
    """The full-text leg's inverted index: one row per current chunk and lexeme it holds, with
    the BM25 term-frequency part of that lexeme in that chunk (`impact`, at the default heading
    weight; `chatbot.retrieval.terms`). Postgres keeps it, like an index: statement triggers on
    the chunk table (migration 0012) write a current chunk's postings when it is inserted,
    rewrite them when it is updated (retired: none) and delete them with it. Never written here."""

    pk = models.CompositePrimaryKey("chunk", "lexeme")
    chunk = models.ForeignKey(
        # Deleted with the chunk by a trigger (the key's first column indexes the chunk).
        Chunk,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )
    lexeme = models.TextField()
    # Denormalised so the per-word scan filters by what the caller may see without a join.
    collection_id = models.BigIntegerField()
    body = models.SmallIntegerField()  # occurrences in the chunk's text
    heading = models.SmallIntegerField()  # occurrences in its heading (document title, section)
    length = models.SmallIntegerField()  # the chunk's distinct lexemes
    impact = models.FloatField()

    class Meta:
        indexes = [
            models.Index(
                fields=["lexeme", "-impact"],
                name="posting_by_impact",
                include=["chunk", "collection_id", "body", "heading", "length"],
            )
        ]

    def __str__(self) -> str:
        return f"{self.chunk_id}:{self.lexeme}"
