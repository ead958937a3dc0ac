"""Ingestion against real Postgres with pgvector and the real local embedding model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import Group
from pytest_django.fixtures import Settings

from chatbot.knowledge import services
from chatbot.knowledge.ingest import index_signature, source_ingest
from chatbot.llm.embeddings import LocalEmbeddings
from chatbot.models import Chunk, Collection, Document, Posting, Source
from tests.knowledge.ingest_support import CountingEmbeddings

pytestmark = pytest.mark.django_db


@pytest.fixture
def collection() -> Collection:
    return services.collection_create(name="Handbook", description="IT help")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "kb"
    root.mkdir()
    (root / "vpn.md").write_text(
        "# VPN\n\nThe VPN connects you to the office.\n\n## Troubleshooting\n\n"
        "If the VPN drops, restart the client and check the token.\n"
    )
    (root / "printers.txt").write_text("Printers on floor 3 need the blue driver.")
    (root / "mail.html").write_text(
        "<title>Mail</title><h2>Spam</h2><p>Suspicious mail goes to the spam folder.</p>"
    )
    return root


def _source(collection: Collection, location: Path, kind: str = "path") -> Source:
    return services.source_create(
        collection=collection, kind=kind, location=str(location), queue=False
    )


def _ingest(source: Source, embedder: CountingEmbeddings | None = None) -> Source:
    return source_ingest(source_id=source.pk, embedder=embedder or CountingEmbeddings())


def _chunk_rows(source: Source) -> list[tuple[str, int, str]]:
    return list(
        Chunk.objects.filter(document__source=source)
        .order_by("document__external_id", "ordinal")
        .values_list("document__external_id", "ordinal", "text")
    )


def test_it_creates_a_collection_visible_to_groups() -> None:
    agents = Group.objects.create(name="kb-agents")

    collection = services.collection_create(name=" Runbooks ", groups=[agents])

    assert collection.name == "Runbooks"
    assert list(collection.groups.all()) == [agents]
    with pytest.raises(services.InvalidSource, match="already exists"):
        services.collection_create(name="Runbooks")


def test_it_refuses_an_invalid_source(collection: Collection, tmp_path: Path) -> None:
    with pytest.raises(services.InvalidSource, match="does not exist on the server"):
        services.source_create(collection=collection, kind="path", location=str(tmp_path / "x"))
    with pytest.raises(services.InvalidSource, match="Unknown source kind 'ftp'"):
        services.source_create(collection=collection, kind="ftp", location=str(tmp_path))
    with pytest.raises(services.InvalidSource, match="Give the path"):
        services.source_create(collection=collection, kind="path", location="  ")
    assert not Source.objects.exists()


def test_it_ingests_a_folder_and_records_progress(collection: Collection, folder: Path) -> None:
    source = _source(collection, folder)
    seen: list[tuple[int, int, int, int]] = []

    source_ingest(
        source_id=source.pk,
        on_progress=lambda s: seen.append(
            (s.documents_done, s.documents_total, s.chunks_done, s.chunks_total)
        ),
    )

    source.refresh_from_db()
    assert source.status == Source.Status.DONE
    assert source.name == "kb"
    assert source.last_ingested_at is not None
    assert (source.documents_total, source.documents_done) == (3, 3)
    chunks = Chunk.objects.filter(document__source=source)
    assert source.chunks_total == source.chunks_done == chunks.count() == 4
    assert seen[-1] == (3, 3, 4, 4)
    assert any(total == 3 and done < 3 for done, total, _, _ in seen), "total known up front"
    assert {e["level"] for e in source.log} == {"info"}
    assert source.log[-1]["message"].startswith("Done: 3 documents, 4 chunks")
    assert all(len(c.embedding) == 384 for c in chunks)
    vpn = Document.objects.get(source=source, external_id="vpn.md")
    assert (vpn.title, vpn.chunk_count, vpn.status) == ("VPN", 2, Document.Status.OK)
    assert len(vpn.content_hash) == 64


def test_it_puts_headings_on_chunks_for_full_text_search(
    collection: Collection, folder: Path
) -> None:
    source = _source(collection, folder)

    _ingest(source)

    assert {c.heading for c in Chunk.objects.filter(document__source=source)} == {
        "VPN",
        "VPN > Troubleshooting",
        "printers",
        "Mail > Spam",
    }
    # The heading is weighted into the generated full-text column.
    hit = Chunk.objects.extra(
        where=["search_vector @@ plainto_tsquery('english', %s)"], params=["troubleshooting"]
    )
    assert [c.heading for c in hit] == ["VPN > Troubleshooting"]


def test_it_leaves_a_clear_error_on_bad_files_and_ingests_the_rest(
    collection: Collection, folder: Path, settings: Settings
) -> None:
    settings.KB_MAX_FILE_BYTES = 2000
    (folder / "empty.md").write_text("")
    (folder / "blob.txt").write_bytes(b"\x00\x01\x02 binary")
    (folder / "huge.txt").write_text("word " * 1000)
    (folder / "scan.pdf").write_bytes(b"%PDF-1.7")
    (folder / "docs.jsonl").write_text(
        '{"id": "ok-1", "title": "Fine", "text": "Good line."}\n{bad\n'
    )
    source = _source(collection, folder)

    _ingest(source)

    source.refresh_from_db()
    assert source.status == Source.Status.DONE
    errors = dict(
        Document.objects.filter(source=source, status=Document.Status.ERROR).values_list(
            "external_id", "error"
        )
    )
    assert errors == {
        "empty.md": "The file is empty.",
        "blob.txt": "The file looks binary, not text (it contains NUL bytes).",
        "huge.txt": "The file is too large (5,000 bytes); the limit is 2,000 bytes.",
        "scan.pdf": "The PDF could not be read: it looks truncated (no end-of-file marker).",
    }
    assert not Chunk.objects.filter(document__status=Document.Status.ERROR).exists()
    good = Document.objects.filter(source=source, status=Document.Status.OK)
    assert sorted(good.values_list("external_id", flat=True)) == [
        "mail.html",
        "ok-1",
        "printers.txt",
        "vpn.md",
    ]
    assert (source.documents_total, source.documents_done) == (8, 8)
    assert any("docs.jsonl line 2: not valid JSON" in e["message"] for e in source.log)


def test_it_does_no_embedding_work_for_unchanged_documents(
    collection: Collection, folder: Path
) -> None:
    source = _source(collection, folder)
    _ingest(source)
    before = list(Chunk.objects.filter(document__source=source).values_list("id", "text"))
    again = CountingEmbeddings()

    _ingest(source, again)

    assert (again.calls, again.texts) == (0, 0)
    assert list(Chunk.objects.filter(document__source=source).values_list("id", "text")) == before
    source.refresh_from_db()
    assert (source.status, source.documents_done, source.chunks_done) == ("done", 3, 4)


def test_it_embeds_each_title_on_its_own_once(collection: Collection, folder: Path) -> None:
    source = _source(collection, folder)
    _ingest(source)
    titles = dict(Document.objects.filter(source=source).values_list("external_id", "title"))
    vectors: dict[str, Any] = dict(
        Document.objects.filter(source=source).values_list("external_id", "title_embedding")
    )
    model = LocalEmbeddings()
    for key, title in titles.items():
        assert title, f"{key} has a title (its heading, or the file name)"
        assert np.allclose(vectors[key], model.embed_query(title), atol=1e-4), key

    # A document stored before titles were embedded gets its vector on the next run, once.
    Document.objects.filter(source=source, external_id="vpn.md").update(title_embedding=None)
    again = CountingEmbeddings()
    _ingest(source, again)
    assert (again.calls, again.texts) == (1, 1), "only the missing title, no chunk"
    vpn = Document.objects.get(source=source, external_id="vpn.md")
    filled: Any = vpn.title_embedding
    assert filled is not None and np.allclose(filled, vectors["vpn.md"], atol=1e-4)
    third = CountingEmbeddings()
    _ingest(source, third)
    assert third.calls == 0


def test_it_replaces_only_the_chunks_of_a_changed_document(
    collection: Collection, folder: Path
) -> None:
    source = _source(collection, folder)
    _ingest(source)
    others = set(
        Chunk.objects.filter(document__source=source)
        .exclude(document__external_id="printers.txt")
        .values_list("id", flat=True)
    )
    (folder / "printers.txt").write_text("Printers on floor 4 now use the green driver.")
    again = CountingEmbeddings()

    _ingest(source, again)

    assert again.texts == 2, "its one chunk and its title"
    printers = Chunk.objects.get(document__external_id="printers.txt", retired_at__isnull=True)
    assert "green driver" in printers.text
    # The full-text index follows: the new words are found, the old ones are gone, nothing twice.
    words = dict(Posting.objects.filter(chunk=printers).values_list("lexeme", "body"))
    assert words["green"] == 1 and "blue" not in words
    assert not Posting.objects.exclude(chunk__in=Chunk.objects.all()).exists()
    assert not Posting.objects.filter(lexeme="blue").exists(), "the old chunk is retired, kept"
    current = Chunk.objects.filter(document__source=source, retired_at__isnull=True)
    assert set(Posting.objects.values_list("chunk_id", flat=True)) == set(
        current.values_list("id", flat=True)
    )
    assert others == set(
        Chunk.objects.filter(document__source=source)
        .exclude(document__external_id="printers.txt")
        .values_list("id", flat=True)
    )


def test_it_deletes_documents_that_left_the_source(
    collection: Collection, folder: Path, settings: Settings
) -> None:
    source = _source(collection, folder)
    _ingest(source)
    (folder / "mail.html").unlink()

    _ingest(source)

    mail = Document.objects.get(source=source, external_id="mail.html")
    assert mail.status == Document.Status.RETIRED, "kept as a past version for now"
    assert not Chunk.objects.filter(document=mail, retired_at__isnull=True).exists()
    assert not Posting.objects.filter(lexeme="spam").exists(), "its words left the index too"
    source.refresh_from_db()
    assert "Removed 1 documents" in " ".join(e["message"] for e in source.log)

    settings.KNOWLEDGE_VERSIONS_KEEP_DAYS = 0  # past the kept window: the next run deletes it
    _ingest(source)

    assert sorted(Document.objects.filter(source=source).values_list("external_id", flat=True)) == [
        "printers.txt",
        "vpn.md",
    ]
    assert not Chunk.objects.filter(document__external_id="mail.html").exists()


def test_it_finishes_an_interrupted_run_without_duplicate_chunks(
    collection: Collection, tmp_path: Path, settings: Settings
) -> None:
    settings.EMBEDDING_BATCH_SIZE = 1  # four chunks per embedding call: several calls per run
    lines = [f'{{"id": "d{i}", "title": "Doc {i}", "text": "Fact number {i}."}}' for i in range(10)]
    (tmp_path / "docs.jsonl").write_text("\n".join(lines))
    source = _source(collection, tmp_path / "docs.jsonl")

    _ingest(source, CountingEmbeddings(fail_after_calls=1))

    source.refresh_from_db()
    assert source.status == Source.Status.FAILED
    assert "worker killed" in source.error
    assert Chunk.objects.filter(document__source=source).count() == 4, "one batch was stored"

    _ingest(source)

    source.refresh_from_db()
    assert source.status == Source.Status.DONE
    assert source.error == ""
    rows = _chunk_rows(source)
    assert len(rows) == len(set(rows)) == 10
    assert sorted(t for _, _, t in rows) == sorted(f"Fact number {i}." for i in range(10))


def test_it_redoes_documents_a_killed_worker_left_half_written(
    collection: Collection, folder: Path
) -> None:
    source = _source(collection, folder)
    _ingest(source)
    expected = _chunk_rows(source)
    # A worker that died mid-job: still "running", one document's chunks gone and hash reset,
    # another's chunks gone while its hash still matches.
    Source.objects.filter(pk=source.pk).update(status=Source.Status.RUNNING)
    vpn = Document.objects.get(source=source, external_id="vpn.md")
    Chunk.objects.filter(document=vpn).delete()
    Document.objects.filter(pk=vpn.pk).update(content_hash="")
    Chunk.objects.filter(document__external_id="mail.html").delete()
    again = CountingEmbeddings()

    _ingest(source, again)

    assert again.texts == 5, "vpn.md (2 chunks) and mail.html (1 chunk) again, with their titles"
    assert _chunk_rows(source) == expected
    source.refresh_from_db()
    assert (source.status, source.chunks_done, source.chunks_total) == ("done", 4, 4)


def test_it_moves_the_collection_version_on_every_change_and_delete(
    collection: Collection, folder: Path
) -> None:
    source = _source(collection, folder)

    _ingest(source)
    collection.refresh_from_db()
    assert collection.version == 3, "one version per document written"
    _ingest(source)
    collection.refresh_from_db()
    assert collection.version == 3, "an unchanged run changes no version"

    services.source_delete(source=source)

    collection.refresh_from_db()
    assert collection.version == 4
    assert not Document.objects.exists()
    assert not Chunk.objects.exists()


def test_it_fails_a_source_whose_path_vanished(collection: Collection, folder: Path) -> None:
    source = _source(collection, folder / "vpn.md")
    (folder / "vpn.md").unlink()

    _ingest(source)

    source.refresh_from_db()
    assert source.status == Source.Status.FAILED
    assert source.error == f"The path {folder / 'vpn.md'} does not exist on the server."
    assert source.log[-1]["level"] == "error"


def test_it_skips_a_disabled_source(collection: Collection, folder: Path) -> None:
    source = _source(collection, folder)
    Source.objects.filter(pk=source.pk).update(enabled=False)
    embedder = CountingEmbeddings()

    _ingest(source, embedder)

    source.refresh_from_db()
    assert source.status == Source.Status.PENDING
    assert embedder.calls == 0
    assert not Document.objects.exists()
    assert "disabled" in source.log[-1]["message"]


def test_it_ingests_past_tickets(collection: Collection, tmp_path: Path) -> None:
    (tmp_path / "tickets.csv").write_text(
        "id,subject,body,resolution,tags\n"
        "T-1,VPN drops hourly,The VPN disconnects every hour.,Client 5.2 fixes it,vpn\n"
    )
    (tmp_path / "more.jsonl").write_text(
        '{"id": "T-2", "subject": "Mail bounce", "body": "Mail bounces.", '
        '"resolution": "Fixed SPF.", "tags": ["mail"]}\n'
    )
    source = _source(collection, tmp_path, kind="tickets")

    _ingest(source)

    documents = {d.external_id: d for d in Document.objects.filter(source=source)}
    assert set(documents) == {"T-1", "T-2"}
    assert documents["T-1"].metadata == {"tags": ["vpn"]}
    chunk = Chunk.objects.get(document=documents["T-1"])
    assert chunk.heading == "VPN drops hourly"
    assert chunk.text == "Problem: The VPN disconnects every hour.\nResolution: Client 5.2 fixes it"


def test_it_disables_and_enables_a_source_bumping_the_version(
    collection: Collection, folder: Path
) -> None:
    source = _source(collection, folder)

    services.source_set_enabled(source=source, enabled=False)
    services.source_set_enabled(source=source, enabled=False)

    source.refresh_from_db()
    collection.refresh_from_db()
    assert (source.enabled, collection.version) == (False, 1)
    services.source_set_enabled(source=source, enabled=True)
    collection.refresh_from_db()
    assert collection.version == 2


def test_it_queues_ingestion_only_after_the_transaction_commits(
    collection: Collection, folder: Path, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        source = services.source_create(collection=collection, kind="path", location=str(folder))
        services.source_reingest(source=source)

    assert len(callbacks) == 2
    source.refresh_from_db()
    assert source.log[-1]["message"] == "Re-ingest queued."


def test_it_indexes_unchanged_documents_again_under_other_chunk_settings(
    collection: Collection, folder: Path, settings: Settings
) -> None:
    source = _source(collection, folder)
    _ingest(source)
    signature = index_signature()
    assert set(
        Document.objects.filter(source=source).values_list("index_signature", flat=True)
    ) == {signature}
    before = set(Chunk.objects.filter(document__source=source).values_list("id", flat=True))
    collection.refresh_from_db()
    version = collection.version

    settings.KB_CHUNK_WORDS, settings.KB_CHUNK_OVERLAP_WORDS = 4, 1
    again = CountingEmbeddings()
    _ingest(source, again)

    assert index_signature() != signature
    current = Chunk.objects.filter(document__source=source, retired_at__isnull=True)
    assert not before & set(current.values_list("id", flat=True)), "every passage made again"
    assert current.count() > len(before), "4-word chunks: more of them"
    assert again.texts == current.count() + 3, "each chunk and each title embedded once"
    collection.refresh_from_db()
    assert collection.version == version + 3, "one version per document indexed again"
    source.refresh_from_db()
    assert any(
        e["message"].startswith("3 documents: 0 new or changed, 3 indexed again (unchanged, but")
        for e in source.log
    )

    third = CountingEmbeddings()
    _ingest(source, third)
    assert (third.calls, third.texts) == (0, 0), "the new settings' passages are kept"


def test_it_takes_a_blank_signature_as_the_current_one(
    collection: Collection, folder: Path
) -> None:
    """Documents stored before signatures were kept are not indexed again, only stamped."""
    source = _source(collection, folder)
    _ingest(source)
    Document.objects.filter(source=source).update(index_signature="")
    again = CountingEmbeddings()

    _ingest(source, again)

    assert (again.calls, again.texts) == (0, 0)
    assert set(
        Document.objects.filter(source=source).values_list("index_signature", flat=True)
    ) == {index_signature()}


def test_the_signature_names_the_embedding_model_by_its_files(
    tmp_path: Path, settings: Settings
) -> None:
    one, other = tmp_path / "one", tmp_path / "other"
    for folder, weights in ((one, b"\x00\x01"), (other, b"\x00\x02")):
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(weights)
    settings.EMBEDDING_MODEL_PATH = str(one)
    first = index_signature()
    settings.EMBEDDING_MODEL_PATH = str(other)
    second = index_signature()
    settings.EMBEDDING_MODEL_PATH = str(one)

    assert first != second
    assert index_signature() == first
