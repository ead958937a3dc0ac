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
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from chatbot.knowledge.uploads import is_upload, upload_discard
from chatbot.models import Collection, Source
from chatbot.telemetry.audit import audit_record

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
    with transaction.atomic():
        collection = Collection.objects.create(name=name[:120], description=description.strip())
        collection.groups.set(list(groups))
        audit_record(
            "collection.create",
            target=collection,
            details={"groups": sorted(g.name for g in collection.groups.all())},
        )
    return collection


def collection_version_next(*, collection_id: int) -> int:
    """Move the collection's version on by one and return the new one. Call it inside the
    transaction that changes the collection's chunks and stamp them with it (`Chunk.valid_from`,
    `valid_to`): the row lock it takes until commit serialises the writers of one collection, so
    each version is exactly one committed change and "as of version V" is what a search read
    while the collection was at V. Returns 0 for a collection that no longer exists."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Collection._meta.db_table} SET version = version + 1 "  # noqa: S608
            "WHERE id = %s RETURNING version",
            [collection_id],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def collection_changed(*, collection_id: int) -> None:
    """After the collection's version moved: answers cached from it already stop being served
    (their key holds the old version); this queues the clean-up that retires them, once the
    surrounding transaction commits."""
    from chatbot.jobs import job_submit_on_commit
    from chatbot.knowledge.tasks import answer_cache_retire_task

    job_submit_on_commit(answer_cache_retire_task, collection_id)


def collection_version_bump(*, collection_id: int) -> None:
    """Move the collection's version on after a change that stamps no chunk (a source enabled,
    disabled or deleted) and retire the answers cached from it."""
    Collection.objects.filter(pk=collection_id).update(version=F("version") + 1)
    collection_changed(collection_id=collection_id)


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
        audit_record(
            "source.create",
            target=source,
            details={"collection": collection.pk, "kind": kind, "location": source.location},
            actor=created_by,
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
    audit_record(
        "source.replace",
        target=source,
        details={"collection": collection.pk, "kind": kind},
        actor=created_by,
    )
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
    with transaction.atomic():
        Source.objects.filter(pk=source.pk).update(log=[*source.log, note][-LOG_KEEP:])
        audit_record("source.reingest", target=source)
        source_queue(source=source)


@transaction.atomic
def source_set_enabled(*, source: Source, enabled: bool) -> None:
    """A disabled source is left out of search; the version bump retires answers cached from it.

    Its chunks keep their version stamps: a search as of a past version also leaves out the
    sources disabled now (as of never brings back what an admin has switched off), and once
    enabled again the source is read as of every version its chunks were current in, including
    the versions during which it was off (`chatbot.retrieval.search`, "as of")."""
    if source.enabled == enabled:
        return
    source.enabled = enabled
    source.save(update_fields=["enabled"])
    audit_record("source.enable", target=source, details={"enabled": enabled})
    collection_version_bump(collection_id=source.collection_id)


@transaction.atomic
def source_delete(*, source: Source) -> None:
    """Delete the source with its documents and chunks, retired ones included, and so the
    citations past answers made from them (the answers themselves stay): deleting is how an
    admin takes content out of the assistant, e.g. when it was wrong or must not be kept. An
    uploaded file is deleted too once this commits; a server path is the admin's own and stays.
    """
    collection_id, location = source.collection_id, source.location
    audit_record(
        "source.delete",
        target=source,
        details={"collection": collection_id, "location": location},
    )
    source.delete()
    collection_version_bump(collection_id=collection_id)
    if is_upload(location) and not Source.objects.filter(location=location).exists():
        transaction.on_commit(partial(upload_discard, location))
