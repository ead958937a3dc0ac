"""Writes for the knowledge base: collections and sources. Ingestion itself, the pipeline a
queued source runs through, is `chatbot.knowledge.ingest`.

A source is one file or folder in one collection: adding the same server path to the same
collection again, or uploading a file of the same name into it again, updates that source and
re-ingests it (unchanged documents cost nothing) rather than making a second copy.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from pathlib import Path

from django.contrib.auth.models import Group, User
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from chatbot.knowledge.uploads import is_upload, upload_discard
from chatbot.models import Collection, Source

LOG_KEEP = 300  # entries kept on a source, newest last


class InvalidSource(ValueError):
    """A source that cannot be created; the message is shown to the person as it is."""


def collection_create(
    *, name: str, description: str = "", groups: Iterable[Group] = ()
) -> Collection:
    name = name.strip()
    if not name:
        raise InvalidSource("A collection needs a name.")
    if Collection.objects.filter(name=name).exists():
        raise InvalidSource(f"A collection named {name!r} already exists.")
    collection = Collection.objects.create(name=name[:120], description=description.strip())
    collection.groups.set(list(groups))
    return collection


def collection_version_bump(*, collection_id: int) -> None:
    """Move the collection's version on after its content changed. Answers cached from it stop
    being served at once (their key holds the old version); the clean-up that retires them runs
    in the background once this commits."""
    from chatbot.jobs import job_submit_on_commit
    from chatbot.knowledge.tasks import answer_cache_retire_task

    Collection.objects.filter(pk=collection_id).update(version=F("version") + 1)
    job_submit_on_commit(answer_cache_retire_task, collection_id)


def _check_kind(kind: str) -> None:
    if kind not in Source.Kind.values:
        raise InvalidSource(
            f"Unknown source kind {kind!r}; choose one of {', '.join(Source.Kind.values)}."
        )


def _lock(collection: Collection) -> None:
    """Serialise the writers of one collection's sources, so two calls adding the same file at
    the same moment make one source, not two."""
    Collection.objects.select_for_update().filter(pk=collection.pk).values_list("pk").first()


def _log(source: Source, message: str) -> None:
    note = {"time": timezone.now().isoformat(), "level": "info", "message": message}
    source.log = [*source.log, note][-LOG_KEEP:]


@transaction.atomic
def source_create(
    *,
    collection: Collection,
    kind: str,
    location: str,
    name: str = "",
    created_by: User | None = None,
    queue: bool = True,
) -> Source:
    """A source for a file or folder on the server. A path the collection already has updates
    that source (its kind, and its name when one is given) instead of adding a duplicate."""
    _check_kind(kind)
    location = (location or "").strip()
    if not location:
        raise InvalidSource("Give the path of a file or folder to ingest.")
    path = Path(location).expanduser()
    if not path.exists():
        raise InvalidSource(f"The path {location} does not exist on the server.")
    if not (path.is_file() or path.is_dir()):
        raise InvalidSource(f"The path {location} is neither a file nor a folder.")
    resolved = path.resolve()
    _lock(collection)
    source = (
        Source.objects.filter(collection=collection, location=str(resolved)).order_by("pk").first()
    )
    if source is None:
        source = Source.objects.create(
            collection=collection,
            kind=kind,
            location=str(resolved),
            name=(name.strip() or resolved.name or str(resolved))[:200],
            created_by=created_by,
        )
    else:
        source.kind = kind
        source.name = name.strip()[:200] or source.name
        _log(source, "Added again: the source is updated, not duplicated.")
        source.save(update_fields=["kind", "name", "log"])
    if queue:
        source_queue(source=source)
    return source


@transaction.atomic
def source_upload(
    *,
    collection: Collection,
    kind: str,
    stored: Path,
    name: str,
    created_by: User | None = None,
) -> Source:
    """A file uploaded into a collection (already stored by `uploads.upload_store`). A file of
    the same name uploaded into the same collection before is replaced: that source points at
    the new file, the old file is deleted once this commits, and the source is re-ingested."""
    _check_kind(kind)
    name = name.strip()[:200] or stored.name
    _lock(collection)
    earlier = [
        s
        for s in Source.objects.filter(collection=collection, name=name).order_by("pk")
        if is_upload(s.location)
    ]
    if not earlier:
        return source_create(
            collection=collection,
            kind=kind,
            location=str(stored),
            name=name,
            created_by=created_by,
        )
    source = earlier[0]
    replaced = source.location
    source.location = str(stored.resolve())
    source.kind = kind
    _log(source, "A new upload of the same name replaced the file.")
    source.save(update_fields=["location", "kind", "log"])
    if replaced != source.location:
        transaction.on_commit(partial(upload_discard, replaced))
    source_queue(source=source)
    return source


def source_queue(*, source: Source) -> None:
    """Queue an ingestion once the surrounding transaction commits (the worker must see the row)."""
    from chatbot.jobs import job_submit_on_commit
    from chatbot.knowledge.tasks import source_ingest_task

    source_id = source.pk
    job_submit_on_commit(source_ingest_task, source_id)


def sources_queue_pending() -> int:
    """Queue again every source still waiting for its first run (its message was lost, e.g. the
    broker restarted empty). Run at start-up; a source already running is left alone."""
    pending = list(Source.objects.filter(status=Source.Status.PENDING, enabled=True))
    for source in pending:
        source_queue(source=source)
    return len(pending)


def source_reingest(*, source: Source) -> None:
    """Queue the source again; unchanged documents cost nothing (see `ingest.source_ingest`)."""
    note = {"time": timezone.now().isoformat(), "level": "info", "message": "Re-ingest queued."}
    Source.objects.filter(pk=source.pk).update(log=[*source.log, note][-LOG_KEEP:])
    source_queue(source=source)


@transaction.atomic
def source_set_enabled(*, source: Source, enabled: bool) -> None:
    """A disabled source is left out of search; the version bump retires answers cached from it."""
    if source.enabled == enabled:
        return
    source.enabled = enabled
    source.save(update_fields=["enabled"])
    collection_version_bump(collection_id=source.collection_id)


@transaction.atomic
def source_delete(*, source: Source) -> None:
    """Delete the source with its documents and chunks, retired ones included, and so the
    citations past answers made from them (the answers themselves stay): deleting is how an
    admin takes content out of the assistant, e.g. when it was wrong or must not be kept. An
    uploaded file is deleted too once this commits; a server path is the admin's own and stays.
    """
    collection_id, location = source.collection_id, source.location
    source.delete()
    collection_version_bump(collection_id=collection_id)
    if is_upload(location) and not Source.objects.filter(location=location).exists():
        transaction.on_commit(partial(upload_discard, location))
