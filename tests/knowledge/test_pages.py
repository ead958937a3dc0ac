"""The knowledge-base manager pages: admins manage, other roles read what is shared with them."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from langchain_core.embeddings import FakeEmbeddings

from chatbot.knowledge import services
from chatbot.knowledge.ingest import source_ingest
from chatbot.knowledge.uploads import upload_discard
from chatbot.models import Chunk, Collection, Document, Source
from tests.knowledge.file_support import pdf_bytes, policy_docx_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def uploads(settings, tmp_path) -> Path:
    """Uploads land in the test's own folder, never in the app's var/."""
    settings.KB_UPLOAD_DIR = tmp_path / "uploads"
    return settings.KB_UPLOAD_DIR


@pytest.fixture
def shared(cast) -> Collection:
    return services.collection_create(
        name="Product docs", groups=Group.objects.filter(name__in=["agent", "reviewer"])
    )


@pytest.fixture
def private(cast) -> Collection:
    return services.collection_create(name="Admin runbooks")


@pytest.fixture
def doc_source(shared: Collection, tmp_path) -> Source:
    path = tmp_path / "faq.jsonl"
    path.write_text(
        '{"id": "reset", "title": "Password reset", "text": "The reset link expires after 30 minutes.",'
        ' "url": "javascript:alert(1)"}\n'
    )
    source = services.source_create(collection=shared, kind="path", location=str(path), queue=False)
    source_ingest(source_id=source.pk)
    source.refresh_from_db()
    return source


def test_it_lists_only_the_collections_shared_with_the_user(
    client_as, alice, shared, private
) -> None:
    page = client_as(alice).get(reverse("knowledge:index")).content.decode()
    assert "Product docs" in page and "Admin runbooks" not in page
    assert "New collection" not in page


def test_it_shows_every_collection_to_admins(client_as, adam, shared, private) -> None:
    page = client_as(adam).get(reverse("knowledge:index")).content.decode()
    assert "Product docs" in page and "Admin runbooks" in page and "New collection" in page


def test_it_creates_a_collection_for_an_admin(client_as, adam) -> None:
    agent = Group.objects.get(name="agent")
    response = client_as(adam).post(
        reverse("knowledge:index"),
        {"name": "Tickets 2026", "description": "", "groups": [agent.pk]},
    )
    created = Collection.objects.get(name="Tickets 2026")
    assert response.status_code == 302
    assert list(created.groups.all()) == [agent]


def test_it_refuses_a_duplicate_collection_name(client_as, adam, shared) -> None:
    response = client_as(adam).post(reverse("knowledge:index"), {"name": "Product docs"})
    assert response.status_code == 400
    assert "already exists" in response.content.decode()


def test_it_refuses_management_to_non_admins(client_as, alice, shared, doc_source) -> None:
    client = client_as(alice)
    assert client.post(reverse("knowledge:index"), {"name": "x"}).status_code == 403
    upload = SimpleUploadedFile("a.txt", b"hello")
    assert (
        client.post(reverse("knowledge:collection", args=[shared.pk]), {"file": upload}).status_code
        == 403
    )
    for action in ("reingest", "disable", "delete"):
        url = reverse("knowledge:source_action", args=[doc_source.pk, action])
        assert client.post(url).status_code == 403
    assert Source.objects.filter(pk=doc_source.pk, enabled=True).exists()
    assert not Collection.objects.filter(name="x").exists()


def test_it_hides_a_collection_that_is_not_shared(client_as, alice, private) -> None:
    assert (
        client_as(alice).get(reverse("knowledge:collection", args=[private.pk])).status_code == 404
    )


def test_it_shows_a_source_with_its_documents_and_chunks(client_as, alice, doc_source) -> None:
    client = client_as(alice)
    page = client.get(reverse("knowledge:source", args=[doc_source.pk])).content.decode()
    assert "Password reset" in page and "1 of 1 documents" in page
    document = Document.objects.get(source=doc_source)
    page = client.get(reverse("knowledge:document", args=[document.pk])).content.decode()
    assert "The reset link expires after 30 minutes." in page
    # A document's URL from an uploaded file is never rendered as a javascript: link.
    assert "javascript:" not in page


def test_it_serves_the_progress_partial_to_htmx(client_as, adam, doc_source) -> None:
    response = client_as(adam).get(
        reverse("knowledge:source", args=[doc_source.pk]), HTTP_HX_REQUEST="true"
    )
    content = response.content.decode()
    assert 'id="source-progress"' in content and "<html" not in content


def test_it_shows_the_ingestion_log_times_as_the_page_shows_times(
    client_as, adam, doc_source, settings
) -> None:
    """The log keeps ISO 8601 text; the page shows "1 Dec 2026, 06:49:13" in the site's time
    zone, with the exact time in a <time> element, and an entry whose time is not one as it is."""
    settings.TIME_ZONE = "Europe/Paris"
    doc_source.log = [
        {"time": "2026-12-01T06:49:13.635534+00:00", "level": "info", "message": "Started."},
        {"time": "not a time", "level": "info", "message": "Odd entry."},
        {"level": "info", "message": "No time."},
    ]
    doc_source.save(update_fields=["log"])
    response = client_as(adam).get(
        reverse("knowledge:source", args=[doc_source.pk]), HTTP_HX_REQUEST="true"
    )
    content = response.content.decode()
    assert (
        '<time datetime="2026-12-01T06:49:13.635534+00:00">1 Dec 2026, 07:49:13</time>' in content
    )
    assert "T06:49:13.635534+00:00</small>" not in content
    assert '<small class="muted">not a time</small> Odd entry.' in content
    assert '<small class="muted"></small> No time.' in content


def test_it_uploads_a_file_and_ingests_it(
    client_as, adam, shared, django_capture_on_commit_callbacks
) -> None:
    upload = SimpleUploadedFile(
        "guide.md", b"# Billing\n\nInvoices are sent on the first day of the month.\n"
    )
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client_as(adam).post(
            reverse("knowledge:collection", args=[shared.pk]), {"file": upload, "kind": "upload"}
        )
    source = Source.objects.get(collection=shared, name="guide.md")
    assert response.status_code == 302 and response["Location"].endswith(f"/sources/{source.pk}/")
    assert len(queued) == 1, "ingestion is queued once the source is committed"
    source_ingest(source_id=source.pk)
    assert Chunk.objects.filter(document__source=source).exists()


@pytest.mark.parametrize(
    ("name", "content", "kind", "message"),
    [
        ("malware.exe", b"MZ", "upload", "be ingested"),
        ("empty.txt", b"", "upload", "empty"),
        ("fake.txt", b"abc\x00\x01def", "upload", "binary"),
        ("fake.pdf", b"Quarterly report, honestly a PDF", "upload", "This file is not a real PDF."),
        ("fake.docx", b"<html>Saved as Word?</html>", "upload", "not a real Word (.docx) document"),
        ("tickets.pdf", pdf_bytes([["T-1 printer jam"]]), "tickets", "must be a csv or jsonl file"),
    ],
)
def test_it_explains_a_rejected_upload(
    client_as, adam, shared, name, content, kind, message
) -> None:
    upload = SimpleUploadedFile(name, content)
    response = client_as(adam).post(
        reverse("knowledge:collection", args=[shared.pk]), {"file": upload, "kind": kind}
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Source.objects.filter(collection=shared).exists()


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("refunds.pdf", pdf_bytes([["Refunds are paid within 30 days."]]), "paid within 30 days"),
        ("travel.docx", policy_docx_bytes(), "Oslo | 2000 NOK"),
    ],
)
def test_it_accepts_and_ingests_a_pdf_or_word_upload(
    client_as, adam, shared, django_capture_on_commit_callbacks, name, content, expected
) -> None:
    upload = SimpleUploadedFile(name, content)
    with django_capture_on_commit_callbacks(execute=False):
        response = client_as(adam).post(
            reverse("knowledge:collection", args=[shared.pk]), {"file": upload, "kind": "upload"}
        )
    source = Source.objects.get(collection=shared, name=name)
    assert response.status_code == 302 and response["Location"].endswith(f"/sources/{source.pk}/")
    source_ingest(source_id=source.pk, embedder=FakeEmbeddings(size=384))
    document = Document.objects.get(source=source)
    assert (document.status, document.error) == (Document.Status.OK, "")
    assert Chunk.objects.filter(document=document, text__contains=expected).exists()


def test_it_lists_every_upload_type_on_the_form(client_as, adam, shared) -> None:
    page = client_as(adam).get(reverse("knowledge:collection", args=[shared.pk])).content.decode()
    assert "txt, md, html, pdf, docx, jsonl or csv." in page


def test_it_disables_reingests_and_deletes_a_source(client_as, adam, doc_source) -> None:
    client = client_as(adam)
    client.post(reverse("knowledge:source_action", args=[doc_source.pk, "disable"]))
    doc_source.refresh_from_db()
    assert not doc_source.enabled
    client.post(reverse("knowledge:source_action", args=[doc_source.pk, "enable"]))
    doc_source.refresh_from_db()
    assert doc_source.enabled
    assert (
        client.post(
            reverse("knowledge:source_action", args=[doc_source.pk, "reingest"])
        ).status_code
        == 302
    )
    response = client.post(reverse("knowledge:source_action", args=[doc_source.pk, "delete"]))
    assert response.status_code == 302
    assert not Source.objects.filter(pk=doc_source.pk).exists()
    assert not Chunk.objects.filter(document__source_id=doc_source.pk).exists()


def test_it_answers_404_to_an_unknown_action(client_as, adam, doc_source) -> None:
    url = reverse("knowledge:source_action", args=[doc_source.pk, "explode"])
    assert client_as(adam).post(url).status_code == 404


def test_it_renders_chunk_text_as_sanitised_markdown(client_as, alice, doc_source) -> None:
    document = Document.objects.get(source=doc_source)
    document.chunks.update(text="Click **Forgot password**. <script>alert(1)</script>")
    page = client_as(alice).get(reverse("knowledge:document", args=[document.pk])).content.decode()
    assert "<strong>Forgot password</strong>" in page
    assert "<script>alert(1)</script>" not in page


def _discard_uploads(callbacks) -> None:
    """Run the file clean-ups queued on commit, not the hand-off to Celery (the tests ingest)."""
    for callback in callbacks:
        if getattr(callback, "func", None) is upload_discard:
            callback()


def _upload(client, collection: Collection, name: str, content: bytes, capture) -> Source:
    upload = SimpleUploadedFile(name, content)
    with capture(execute=False) as callbacks:
        response = client.post(
            reverse("knowledge:collection", args=[collection.pk]),
            {"file": upload, "kind": "upload"},
        )
    _discard_uploads(callbacks)
    assert response.status_code == 302, response.content.decode()
    return Source.objects.get(pk=response["Location"].rstrip("/").rsplit("/", 1)[1])


def test_it_replaces_an_earlier_upload_of_the_same_name(
    client_as, adam, shared, django_capture_on_commit_callbacks
) -> None:
    client, capture = client_as(adam), django_capture_on_commit_callbacks
    first = _upload(
        client, shared, "guide.md", b"# Billing\n\nInvoices go out on the 1st.\n", capture
    )
    source_ingest(source_id=first.pk)
    old_file = Path(first.location)

    again = _upload(
        client, shared, "guide.md", b"# Billing\n\nInvoices go out on the 5th.\n", capture
    )
    source_ingest(source_id=again.pk)

    assert again.pk == first.pk and shared.sources.count() == 1
    assert not old_file.exists() and Path(again.location).exists()
    current = Chunk.objects.filter(collection=shared, retired_at__isnull=True)
    assert list(current.values_list("text", flat=True)) == ["Invoices go out on the 5th."]


def test_it_keeps_the_extension_of_a_long_upload_name(
    client_as, adam, shared, django_capture_on_commit_callbacks
) -> None:
    name = "Quarterly report " * 12 + ".md"  # 207 characters
    content = b"# Report\n\nRevenue grew.\n"
    source = _upload(client_as(adam), shared, name, content, django_capture_on_commit_callbacks)

    stored = Path(source.location)
    assert stored.suffix == ".md" and len(stored.name) <= 120
    assert stored.name.startswith("Quarterly_report_Quarterly_report")
    assert source_ingest(source_id=source.pk).status == Source.Status.DONE
    assert Chunk.objects.filter(document__source=source).exists()


def test_it_deletes_the_uploaded_file_with_its_source(
    client_as, adam, shared, django_capture_on_commit_callbacks
) -> None:
    client, capture = client_as(adam), django_capture_on_commit_callbacks
    kept = _upload(client, shared, "kept.md", b"# Kept\n\nStays.\n", capture)
    gone = _upload(client, shared, "gone.md", b"# Gone\n\nGoes.\n", capture)
    missing = _upload(client, shared, "missing.md", b"# Missing\n\nAlready gone.\n", capture)
    Path(missing.location).unlink()  # someone cleaned the volume by hand

    with capture() as callbacks:
        for source in (gone, missing):
            url = reverse("knowledge:source_action", args=[source.pk, "delete"])
            assert client.post(url).status_code == 302
    _discard_uploads(callbacks)

    assert not Path(gone.location).exists() and not Path(gone.location).parent.exists()
    assert not Source.objects.filter(pk__in=[gone.pk, missing.pk]).exists()
    assert Path(kept.location).exists()


def test_it_leaves_a_server_path_on_disk_when_its_source_is_deleted(
    client_as, adam, doc_source, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        client_as(adam).post(reverse("knowledge:source_action", args=[doc_source.pk, "delete"]))
    assert not [c for c in callbacks if getattr(c, "func", None) is upload_discard]
    assert not Source.objects.filter(pk=doc_source.pk).exists()
    assert Path(doc_source.location).exists()
