"""A scratch knowledge base for an offline evaluation: the set's documents ingested through the
real pipeline into a new collection, shared with a new group whose only member is a new inactive
user, so that retrieval as that user sees this collection and nothing else.

All three are deleted on the way out. A failed deletion is logged, not raised: it must not throw
away figures that took many minutes of model time to get.
"""

from __future__ import annotations

import json
import logging
import secrets
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.contrib.auth.models import Group, User
from django.db import DatabaseError, transaction

from chatbot.knowledge.ingest import source_ingest
from chatbot.knowledge.services import InvalidSource, collection_create, source_create
from chatbot.models import Collection, Source

logger = logging.getLogger(__name__)


class IngestFailed(RuntimeError):
    """The documents could not be ingested; the message says why."""


@dataclass(frozen=True)
class Scratch:
    name: str
    user: User
    collection: Collection
    documents: int
    chunks: int
    ingest_s: float


@contextmanager
def scratch_knowledge_base(
    documents: Path | Iterable[Mapping[str, Any]], *, purpose: str, keep: bool = False
) -> Iterator[Scratch]:
    """`documents`: a jsonl file, ingested as it is, or document rows to ingest. `purpose` names
    the run (`eval_retrieval`): the scratch objects are called `eval-retrieval-<random>`. With
    `keep`, nothing is deleted, so the collection can be inspected."""
    name = f"{purpose.replace('_', '-')}-{secrets.token_hex(4)}"
    group = Group.objects.create(name=name)
    user = User.objects.create_user(username=name, is_active=False)
    user.groups.add(group)
    collection: Collection | None = None
    try:
        collection = collection_create(
            name=name, description=f"Scratch collection for {purpose}", groups=[group]
        )
        source, seconds = _ingest(collection, documents)
        yield Scratch(
            name=name,
            user=user,
            collection=collection,
            documents=source.documents_done,
            chunks=source.chunks_done,
            ingest_s=seconds,
        )
    finally:
        if not keep:
            _scratch_delete(name, collection, user, group)


def _ingest(
    collection: Collection, documents: Path | Iterable[Mapping[str, Any]]
) -> tuple[Source, float]:
    """Ingest through the knowledge area's own pipeline: measuring through it is the point."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=collection.name) as folder:
        if isinstance(documents, Path):
            path, label = documents.resolve(), str(documents)
        else:
            path, label = Path(folder) / "documents.jsonl", "the documents"
            path.write_text(
                "".join(json.dumps(doc, ensure_ascii=False) + "\n" for doc in documents),
                encoding="utf-8",
            )
        try:
            source = source_create(
                collection=collection,
                kind=Source.Kind.PATH,
                location=str(path),
                name=path.name,
                queue=False,
            )
        except InvalidSource as exc:
            raise IngestFailed(f"Ingesting {label} failed: {exc}") from None
        source = source_ingest(source_id=source.pk)
    if source.status != Source.Status.DONE:
        raise IngestFailed(f"Ingesting {label} failed: {source.error or source.status}")
    return source, time.perf_counter() - started


def _scratch_delete(name: str, collection: Collection | None, user: User, group: Group) -> None:
    try:
        with transaction.atomic():
            if collection is not None:
                collection.delete()
            user.delete()
            group.delete()
    except DatabaseError:
        logger.exception(
            "could not delete the scratch collection, user and group %r; delete them by hand "
            "(Knowledge → the collection → delete; the user and group in the Django shell)",
            name,
        )
