"""Ingestion queued through Celery and run by a real worker over the test Redis."""

from __future__ import annotations

import time
from io import StringIO
from pathlib import Path

import pytest
from celery.contrib.testing.worker import TestWorkController
from django.core.management import call_command

from chatbot.celery import app
from chatbot.knowledge import services
from chatbot.models import Chunk, Collection, Source

pytestmark = pytest.mark.django_db(transaction=True)


def _wait_until_finished(source_id: int, timeout: float = 120) -> Source:
    deadline = time.monotonic() + timeout
    while True:
        source = Source.objects.get(pk=source_id)
        if source.status in {Source.Status.DONE, Source.Status.FAILED}:
            return source
        if time.monotonic() > deadline:
            raise AssertionError(f"source still {source.status} after {timeout} s: {source.log}")
        time.sleep(0.2)


def test_it_registers_the_ingest_task_for_workers() -> None:
    app.loader.import_default_modules()  # what a worker does at start: runs autodiscovery

    assert "knowledge.source_ingest" in app.tasks


def test_it_ingests_a_queued_source_in_a_real_worker(
    tmp_path: Path, worker: TestWorkController
) -> None:
    (tmp_path / "faq.md").write_text("# FAQ\n\n## Wifi\n\nThe guest wifi password is on the wall.")
    collection = services.collection_create(name="Worker KB")

    source = services.source_create(collection=collection, kind="path", location=str(tmp_path))

    finished = _wait_until_finished(source.pk)
    assert finished.status == Source.Status.DONE, finished.log
    assert (finished.documents_done, finished.chunks_done) == (1, 1)
    assert Chunk.objects.get(document__source=source).heading == "FAQ > Wifi"
    collection.refresh_from_db()
    assert collection.version == 1


def test_it_queues_with_no_wait_and_a_worker_finishes_the_job(
    tmp_path: Path, worker: TestWorkController
) -> None:
    (tmp_path / "tickets.csv").write_text(
        "subject,body,resolution,tags\nLocked out,Cannot log in,Reset the password,account\n"
    )
    out = StringIO()

    call_command(
        "ingest", str(tmp_path), "--collection", "Tickets", "--kind", "tickets", "--no-wait",
        stdout=out,
    )  # fmt: skip

    source = Source.objects.get()
    assert f"Queued source #{source.pk}" in out.getvalue()
    finished = _wait_until_finished(source.pk)
    assert finished.status == Source.Status.DONE, finished.log
    assert Collection.objects.get(name="Tickets").documents.get().title == "Locked out"


def test_a_source_whose_message_was_lost_is_queued_again_at_start_up(
    tmp_path: Path, worker: TestWorkController
) -> None:
    (tmp_path / "vpn.md").write_text("# VPN\n\nPick the nearest gateway.")
    collection = services.collection_create(name="Lost message")
    # Created without queueing: as if the broker lost the message before a worker took it.
    lost = services.source_create(
        collection=collection, kind="path", location=str(tmp_path), queue=False
    )
    out = StringIO()

    call_command("bootstrap", stdout=out)

    assert "queued 1 sources waiting to be ingested" in out.getvalue()
    assert _wait_until_finished(lost.pk).status == Source.Status.DONE
