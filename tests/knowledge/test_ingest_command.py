from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from chatbot.models import Chunk, Collection, Source

pytestmark = pytest.mark.django_db


def test_it_ingests_with_the_command_and_shows_progress_and_a_summary(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Alpha\n\nFirst page.")
    (tmp_path / "b.txt").write_text("Second page.")
    (tmp_path / "c.txt").write_bytes(b"")
    out, err = StringIO(), StringIO()

    call_command("ingest", str(tmp_path), "--collection", "Docs", stdout=out, stderr=err)

    source = Source.objects.get(collection__name="Docs")
    assert source.status == Source.Status.DONE
    assert Chunk.objects.filter(document__source=source).count() == 2
    assert "Created collection 'Docs'." in out.getvalue()
    assert (
        f"Source #{source.pk} done: 3 documents, 2 chunks, 1 documents with errors."
        in out.getvalue()
    )
    assert "c.txt: The file is empty." in out.getvalue()
    assert "[" + "#" * 30 + "] 3/3 documents, 2/2 chunks" in err.getvalue()


def test_it_adds_to_an_existing_collection(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Text.")
    call_command("ingest", str(tmp_path), "--collection", "Docs", stdout=StringIO())
    call_command("ingest", str(tmp_path / "a.txt"), "--collection", "Docs", stdout=StringIO())

    collection = Collection.objects.get(name="Docs")
    assert collection.sources.count() == 2
    assert collection.version == 2


def test_it_exits_with_an_error_for_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="does not exist on the server"):
        call_command("ingest", str(tmp_path / "missing"), "--collection", "Docs")


def test_it_updates_the_same_source_when_a_path_is_ingested_twice(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"page-{i}.md").write_text(f"# Page {i}\n\nFact number {i} about the office.")
    out = StringIO()
    call_command("ingest", str(tmp_path), "--collection", "Docs", stdout=StringIO())
    first = Chunk.objects.filter(collection__name="Docs").count()

    call_command("ingest", str(tmp_path), "--collection", "Docs", "--name", "Pages", stdout=out)

    collection = Collection.objects.get(name="Docs")
    source = collection.sources.get()
    assert (first, Chunk.objects.filter(collection=collection).count()) == (5, 5)
    assert source.documents.count() == 5 and source.name == "Pages"
    assert f"Updating source #{source.pk}" in out.getvalue()
    assert f"Source #{source.pk} done: 5 documents, 5 chunks" in out.getvalue()
