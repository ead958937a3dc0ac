"""Ingestion throughput: our pipeline versus the bare embedding model on the same chunks.

    .venv/bin/python tests/benchmarks/bench_ingest.py [--path PATH] [--limit N]

Input (--path, a file or folder a source can ingest), by default the first that exists of:
  /usr/share/doc/postgresql-doc-15/html   Debian's PostgreSQL 15 manual, ~1,170 HTML pages, ~10,800
                                          chunks (`apt-get install postgresql-doc-15`);
  /work/shared/evalsets/covidqa_dev/documents.jsonl   30 scientific articles, ~710 chunks.
--limit N keeps the first N files of a folder (or the first N lines of a jsonl file), copied to a
temporary folder; the whole manual takes about 9 minutes on 2 cores.

Uses the dev database (the embedded services start if needed; migrations are applied). One run:
  pipeline:  a scratch collection with one server-path source (`collection_create`,
             `source_create(queue=False)`), then `source_ingest(source_id=...)` timed: it parses,
             splits, embeds several documents' chunks per call and stores them (Postgres fills
             the generated tsvector and the HNSW and GIN indexes on insert);
  unchanged: `source_ingest` again on the unchanged source, timed: it should embed nothing;
  bare model: the chunk texts the pipeline stored (heading + text, as `TextChunk.embedding_text()`
             builds them), embedded by `LocalEmbeddings().embed_documents` in one call with the
             same batch size (settings.EMBEDDING_BATCH_SIZE).
The model is warmed up before anything is timed. The pipeline gets the real model wrapped in a
stopwatch, so the report splits its time into embedding and everything else. The scratch collection
is deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402

from chatbot.knowledge.ingest import source_ingest  # noqa: E402
from chatbot.knowledge.parsers import SUPPORTED_TYPES  # noqa: E402
from chatbot.knowledge.services import collection_create, source_create  # noqa: E402
from chatbot.knowledge.splitting import TextChunk  # noqa: E402
from chatbot.llm.embeddings import LocalEmbeddings  # noqa: E402
from chatbot.models import Chunk, Collection, Document, Source  # noqa: E402
from chatbot.runtime.embedded import ensure_services  # noqa: E402

DEFAULT_PATHS = [
    Path("/usr/share/doc/postgresql-doc-15/html"),
    Path("/work/shared/evalsets/covidqa_dev/documents.jsonl"),
]
COLLECTION = "bench-ingest (scratch)"
WARMUP_TEXTS = [
    " ".join(f"warm-up sentence {i} about databases, indexes and queries." for _ in range(n))
    for i, n in enumerate([1, 4, 12, 25] * 32)
]


class Stopwatch(Embeddings):
    """The real model, with the time spent in it and the texts it was given."""

    def __init__(self, model: Embeddings) -> None:
        self.model = model
        self.seconds = 0.0
        self.calls = 0
        self.texts: list[str] = []

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        started = time.perf_counter()
        vectors = self.model.embed_documents(texts)
        self.seconds += time.perf_counter() - started
        self.calls += 1
        self.texts.extend(texts)
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def default_path() -> Path:
    for path in DEFAULT_PATHS:
        if path.exists():
            return path
    raise SystemExit(
        "No input found. Install the PostgreSQL manual (`apt-get install postgresql-doc-15`) "
        "or give --path."
    )


@contextmanager
def limited(path: Path, limit: int | None) -> Iterator[Path]:
    """The first `limit` files of a folder (or lines of a jsonl file), in a temporary copy."""
    if limit is None or (path.is_file() and path.suffix.lower() != ".jsonl"):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        if path.is_file():
            lines = [line for line in path.read_text().splitlines() if line.strip()][:limit]
            target = Path(tmp) / path.name
            target.write_text("\n".join(lines) + "\n")
            yield target
            return
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.suffix.lower() in SUPPORTED_TYPES
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )[:limit]
        for file in files:
            target = Path(tmp) / file.relative_to(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target)
        yield Path(tmp)


def warm_up(model: LocalEmbeddings) -> None:
    started = time.perf_counter()
    model.embed_documents(WARMUP_TEXTS)
    print(f"model warmed up ({len(WARMUP_TEXTS)} texts, {time.perf_counter() - started:.1f} s)")


def stored_texts(collection: Collection) -> list[str]:
    rows = Chunk.objects.filter(collection=collection).order_by("document__external_id", "ordinal")
    return [
        TextChunk(heading=heading, text=text).embedding_text()
        for heading, text in rows.values_list("heading", "text")
    ]


@dataclass
class Figures:
    documents: int = 0
    errors: int = 0
    chunks: int = 0
    pipeline_s: float = 0.0
    embed_s: float = 0.0
    calls: int = 0
    bare_s: float = 0.0
    unchanged_s: float = 0.0
    unchanged_texts: int = 0


def bench(path: Path) -> Figures:
    model = LocalEmbeddings()
    warm_up(model)
    Collection.objects.filter(name=COLLECTION).delete()  # left by a run that was killed
    collection = collection_create(name=COLLECTION, description="Scratch data of bench_ingest.py")
    figures = Figures()
    try:
        source = source_create(
            collection=collection, kind=Source.Kind.PATH, location=str(path), queue=False
        )
        timed = Stopwatch(model)
        started = time.perf_counter()
        first = source_ingest(source_id=source.pk, embedder=timed)
        figures.pipeline_s = time.perf_counter() - started
        if first.status != Source.Status.DONE:
            raise SystemExit(f"ingestion ended {first.status}: {first.error}")
        figures.embed_s, figures.calls = timed.seconds, timed.calls
        figures.documents = first.documents_done
        figures.errors = Document.objects.filter(
            source=source, status=Document.Status.ERROR
        ).count()

        again = Stopwatch(model)
        started = time.perf_counter()
        second = source_ingest(source_id=source.pk, embedder=again)
        figures.unchanged_s = time.perf_counter() - started
        figures.unchanged_texts = len(again.texts)
        if second.status != Source.Status.DONE:
            raise SystemExit(f"the second ingestion ended {second.status}: {second.error}")

        texts = stored_texts(collection)
        if sorted(texts) != sorted(timed.texts):
            raise SystemExit("the stored chunks differ from the texts the pipeline embedded")
        figures.chunks = len(texts)
        started = time.perf_counter()
        vectors = model.embed_documents(texts)
        figures.bare_s = time.perf_counter() - started
        if len(vectors) != len(texts):
            raise SystemExit("the model returned fewer vectors than texts")
    finally:
        Collection.objects.filter(pk=collection.pk).delete()
    return figures


def report(where: str, f: Figures) -> None:
    batch = settings.EMBEDDING_BATCH_SIZE
    print(f"\nIngestion of {where}: {f.documents} documents, {f.chunks} chunks, batch size {batch}")
    print(
        f"pipeline (source_ingest)      {f.pipeline_s:8.1f} s   "
        f"{f.chunks / f.pipeline_s:7.1f} chunks/s"
    )
    print(f"  of which embedding          {f.embed_s:8.1f} s   ({f.calls} calls to the model)")
    print(
        f"  everything else             {f.pipeline_s - f.embed_s:8.1f} s   (parse, split, store)"
    )
    print(f"bare model (embed_documents)  {f.bare_s:8.1f} s   {f.chunks / f.bare_s:7.1f} chunks/s")
    print(f"ratio pipeline / bare model   {f.bare_s / f.pipeline_s:8.2f}    (aim: at least 0.80)")
    print(
        f"second ingestion, unchanged   {f.unchanged_s:8.1f} s   "
        f"({f.unchanged_texts} chunks embedded; should be 0)"
    )
    if f.errors:
        print(f"{f.errors} documents were stored with an error (see the source's log)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--path", type=Path, default=None, help="file or folder to ingest")
    parser.add_argument("--limit", type=int, default=None, help="first N files (or jsonl lines)")
    args = parser.parse_args()
    path = (args.path or default_path()).resolve()
    if not path.exists():
        raise SystemExit(f"{path} does not exist")
    # Some pages of the PostgreSQL manual start with an XML declaration; bs4 says so once per page.
    warnings.filterwarnings("ignore", message=".*looks like you're using an HTML parser.*")

    ensure_services()
    call_command("migrate", interactive=False, verbosity=0)
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.2f} at the start")
    with limited(path, args.limit) as source_path:
        figures = bench(source_path)
    shown = f"{path} (first {args.limit})" if args.limit else str(path)
    report(shown, figures)


if __name__ == "__main__":
    main()
