from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import docx
import pytest
from docx.oxml import parse_xml
from docx.oxml.ns import nsdecls
from langchain_core.embeddings import FakeEmbeddings
from pytest_django.fixtures import Settings

from chatbot.knowledge import services
from chatbot.knowledge.ingest import source_ingest
from chatbot.knowledge.markup import html_to_markdown
from chatbot.knowledge.parsers import RawDocument, SourceUnavailable, parse_location
from chatbot.knowledge.splitting import split_document
from chatbot.models import Chunk, Document, Source
from tests.knowledge.file_support import encrypted_pdf_bytes, pdf_bytes, policy_docx_bytes

Log = list[tuple[str, str]]


def _parse(path: Path, kind: str = "path") -> tuple[list[RawDocument], Log]:
    log: Log = []
    docs = parse_location(str(path), kind=kind, log=lambda level, msg: log.append((level, msg)))
    return docs, log


def test_it_parses_text_markdown_and_html_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("Plain words about printers.")
    (tmp_path / "guide.md").write_text("# VPN guide\n\n## Setup\n\nInstall the client.")
    (tmp_path / "page.html").write_text(
        "<html><head><title>Reset &amp; unlock</title><style>p{}</style></head>"
        "<body><h1>Passwords</h1><p>Use the <b>portal</b>.</p><script>evil()</script></body></html>"
    )

    docs, log = _parse(tmp_path)

    by_id = {d.external_id: d for d in docs}
    assert set(by_id) == {"notes.txt", "guide.md", "page.html"}
    assert by_id["notes.txt"].title == "notes"
    assert by_id["notes.txt"].text == "Plain words about printers."
    assert by_id["guide.md"].title == "VPN guide"
    assert by_id["guide.md"].markdown
    page = by_id["page.html"]
    assert page.title == "Reset & unlock"
    assert page.text == "# Passwords\n\nUse the portal."
    assert all(not d.error for d in docs)
    assert log == []


def test_it_keeps_html_headings_and_preformatted_text() -> None:
    title, text = html_to_markdown(
        "<h2>Install</h2><ul><li>one</li><li>two</li></ul><pre>  indented\n# comment</pre>"
    )

    assert title == ""
    assert text.startswith("## Install\n\n- one\n- two")
    assert "```\n  indented\n# comment\n```" in text


def test_it_reads_jsonl_documents_with_ids_urls_and_metadata(tmp_path: Path) -> None:
    rows = [
        {"id": "kb-1", "title": "VPN", "text": "Restart the VPN client.", "url": "https://kb/1"},
        {"id": 2, "title": "Mail", "text": "Check the spam folder.", "metadata": {"team": "it"}},
    ]
    (tmp_path / "docs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")

    docs, log = _parse(tmp_path / "docs.jsonl")

    assert [(d.external_id, d.title, d.url) for d in docs] == [
        ("kb-1", "VPN", "https://kb/1"),
        ("2", "Mail", ""),
    ]
    assert docs[1].metadata == {"team": "it"}
    assert log == []


def test_it_reports_a_malformed_jsonl_line_and_keeps_the_rest(tmp_path: Path) -> None:
    (tmp_path / "docs.jsonl").write_text(
        '{"id": "a", "title": "A", "text": "first"}\n'
        '{"id": "b", "title": "B", "text": \n'
        '["not", "an", "object"]\n'
        '{"id": "c", "title": "C", "text": "third"}\n'
    )

    docs, log = _parse(tmp_path / "docs.jsonl")

    assert [d.external_id for d in docs] == ["a", "c"]
    assert [level for level, _ in log] == ["error", "error"]
    assert "line 2: not valid JSON" in log[0][1]
    assert "line 3: expected a JSON object" in log[1][1]


def test_it_reads_tickets_from_csv_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "tickets.csv").write_text(
        "id,subject,body,resolution,tags\n"
        'T-1,VPN drops,"The VPN disconnects every hour.",Updated the client to 5.2,"vpn, network"\n'
        ",Printer jam,Paper stuck on floor 3,Opened tray B,hardware\n"
    )
    (tmp_path / "tickets.jsonl").write_text(
        json.dumps(
            {
                "id": "T-9",
                "subject": "Mail bounce",
                "body": "Mail to partners bounces.",
                "resolution": "Fixed the SPF record.",
                "tags": ["mail", "dns"],
            }
        )
    )

    docs, _ = _parse(tmp_path, kind="tickets")

    by_id = {d.external_id: d for d in docs}
    assert set(by_id) == {"T-1", "tickets.csv:3", "T-9"}
    assert by_id["T-1"].title == "VPN drops"
    assert by_id["T-1"].text == (
        "Problem: The VPN disconnects every hour.\nResolution: Updated the client to 5.2"
    )
    assert by_id["T-1"].metadata == {"tags": ["vpn", "network"]}
    assert by_id["tickets.csv:3"].metadata == {"tags": ["hardware"]}
    assert by_id["T-9"].metadata == {"tags": ["mail", "dns"]}
    assert (
        by_id["T-9"].text == "Problem: Mail to partners bounces.\nResolution: Fixed the SPF record."
    )


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_it_reads_a_word_document_with_its_headings_lists_and_tables(tmp_path: Path) -> None:
    (tmp_path / "travel.docx").write_bytes(policy_docx_bytes())

    docs, log = _parse(tmp_path / "travel.docx")

    assert len(docs) == 1 and log == []
    assert docs[0].title == "Travel policy"
    assert docs[0].markdown and not docs[0].error
    assert docs[0].text == (
        "# Travel policy\n\n"
        "Who may travel and how to book.\n\n"
        "# Booking\n\n"
        "Book every trip through the travel portal.\n\n"
        "- Flights in economy\n"
        "- Trains in second class\n\n"
        "## Hotel limits\n\n"
        "City | Per night\n"
        "Paris | 180 EUR\n"
        "Oslo | 2000 NOK\n\n"
        "Receipts go to finance within 30 days."
    )


def test_it_splits_a_word_document_at_its_headings(tmp_path: Path) -> None:
    (tmp_path / "travel.docx").write_bytes(policy_docx_bytes())
    (doc,), _ = _parse(tmp_path / "travel.docx")

    chunks = split_document(title=doc.title, text=doc.text, markdown=doc.markdown)

    by_heading = {c.heading: c.text for c in chunks}
    assert "Oslo | 2000 NOK" in by_heading["Travel policy > Booking > Hotel limits"]
    assert "- Flights in economy" in by_heading["Travel policy > Booking"]


def test_it_prefers_a_word_documents_own_title_property(tmp_path: Path) -> None:
    document = docx.Document()
    document.core_properties.title = "IT policy"
    document.add_heading("Laptops", level=1)
    document.add_paragraph("Lock your screen.")
    document.add_heading("Loss", level=2)
    document.save(str(tmp_path / "policy.docx"))

    docs, _ = _parse(tmp_path / "policy.docx")

    assert docs[0].title == "IT policy"
    assert docs[0].text == "# Laptops\n\nLock your screen.\n\n## Loss"


def test_it_reads_word_content_controls_but_not_the_table_of_contents(tmp_path: Path) -> None:
    document = docx.Document()
    first = document.add_heading("Intro", level=1)
    last = document.add_paragraph("Closing words.")
    first._p.addprevious(
        parse_xml(
            f"<w:sdt {nsdecls('w')}><w:sdtPr><w:docPartObj>"
            '<w:docPartGallery w:val="Table of Contents"/></w:docPartObj></w:sdtPr>'
            "<w:sdtContent><w:p><w:r><w:t>Intro .......... 1</w:t></w:r></w:p></w:sdtContent>"
            "</w:sdt>"
        )
    )
    last._p.addprevious(
        parse_xml(
            f"<w:sdt {nsdecls('w')}><w:sdtPr/><w:sdtContent>"
            "<w:p><w:r><w:t>Typed into a form field.</w:t></w:r></w:p></w:sdtContent></w:sdt>"
        )
    )
    document.save(str(tmp_path / "form.docx"))

    docs, _ = _parse(tmp_path / "form.docx")

    assert docs[0].text == "# Intro\n\nTyped into a form field.\n\nClosing words."


def test_it_extracts_the_text_of_a_pdf_page_by_page(tmp_path: Path) -> None:
    (tmp_path / "refunds.pdf").write_bytes(
        pdf_bytes(
            [["Refunds (within 30 days)", "are paid to the original card."], ["Page two: fees."]],
            title="Refund policy",
        )
    )
    (tmp_path / "untitled.pdf").write_bytes(pdf_bytes([["Just text."]]))

    docs, log = _parse(tmp_path)

    by_id = {d.external_id: d for d in docs}
    refunds = by_id["refunds.pdf"]
    assert (refunds.title, refunds.error, refunds.markdown) == ("Refund policy", "", False)
    assert refunds.text == (
        "Refunds (within 30 days)\nare paid to the original card.\n\nPage two: fees."
    )
    assert (by_id["untitled.pdf"].title, by_id["untitled.pdf"].text) == ("untitled", "Just text.")
    assert log == []


def test_it_keeps_the_readable_pages_of_a_pdf_and_reports_the_broken_ones(tmp_path: Path) -> None:
    (tmp_path / "mixed.pdf").write_bytes(pdf_bytes([["Readable first page."], None]))

    docs, log = _parse(tmp_path / "mixed.pdf")

    assert [(d.text, d.error) for d in docs] == [("Readable first page.", "")]
    assert log == [("warning", "mixed.pdf: 1 page(s) could not be decoded and were left out.")]


_GOOD_PDF = pdf_bytes([["Printers on floor 3 need the blue driver."]])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"this is plain text, renamed",
            "The PDF could not be read: it does not start with a PDF header",
        ),
        (b"%PDF-1.4 ...", "The PDF could not be read: it looks truncated"),
        (_GOOD_PDF[: len(_GOOD_PDF) // 2], "The PDF could not be read: it looks truncated"),
        (
            encrypted_pdf_bytes(_GOOD_PDF, password="s3cret"),
            "The PDF could not be read: it is encrypted with a password",
        ),
        (pdf_bytes([[], []]), "The PDF has no text layer (a scan?)"),
        (pdf_bytes([None]), "The PDF could not be read: none of its pages could be decoded"),
    ],
    ids=["garbage", "header-only", "truncated", "encrypted", "scanned", "undecodable"],
)
def test_it_gives_an_unreadable_pdf_a_clear_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    (tmp_path / "manual.pdf").write_bytes(content)

    docs, _ = _parse(tmp_path / "manual.pdf")

    assert [(d.external_id, d.text) for d in docs] == [("manual.pdf", "")]
    assert docs[0].error.startswith(message)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", b"", "The file is empty."),
        ("blank.md", b"  \n\n ", "The file is empty."),
        ("binary.txt", b"PK\x03\x04\x00\x00binary", "looks binary"),
        ("latin.md", "café".encode("latin-1"), "not UTF-8 text"),
        ("old.doc", b"\xd0\xcf\x11\xe0", "Old Word .doc files are not supported"),
        ("tool.exe", b"MZ", "Unsupported file type '.exe'"),
        ("broken.docx", b"not a zip at all", "not a valid Word (.docx) document (it is not a zip)"),
        ("parts.docx", _zip({"a.txt": "x"}), "the zip has no word/document.xml"),
        ("all-bad.jsonl", b"{oops\n", "holds no usable records"),
        ("big.txt", b"word " * 300, "too large (1,500 bytes); the limit is 1,000 bytes"),
    ],
)
def test_it_gives_a_bad_file_a_clear_error(
    tmp_path: Path, settings: Settings, name: str, content: bytes, message: str
) -> None:
    settings.KB_MAX_FILE_BYTES = 1000
    (tmp_path / name).write_bytes(content)

    docs, _ = _parse(tmp_path / name)

    assert len(docs) == 1
    assert docs[0].external_id == name
    assert message in docs[0].error


def test_it_walks_a_folder_recursively_and_skips_unknown_types(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "deep.md").write_text("# Deep\n\ntext")
    (tmp_path / "top.txt").write_text("top")
    (tmp_path / "logo.png").write_bytes(b"\x89PNG")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD.txt").write_text("hidden")
    (tmp_path / "manual.pdf").write_bytes(b"%PDF")

    docs, log = _parse(tmp_path)

    assert sorted(d.external_id for d in docs) == ["a/b/deep.md", "manual.pdf", "top.txt"]
    assert [d.external_id for d in docs if d.error] == ["manual.pdf"]
    assert log == [("warning", "Skipped 1 files of unsupported type: .png (1).")]


def test_it_raises_for_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="does not exist"):
        _parse(tmp_path / "nowhere")


def test_it_takes_a_title_from_the_first_heading_outside_code(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("```\n# shell comment\n```\n\n# Real title\n\ntext")
    (tmp_path / "b.html").write_text("<pre># c</pre><h2>Sub</h2><h1>Page <i>one</i></h1><p>x</p>")

    docs, _ = _parse(tmp_path)

    assert [d.title for d in docs] == ["Real title", "Page one"]


def test_it_drops_page_furniture_from_html_and_keeps_tables_and_lists() -> None:
    title, text = html_to_markdown(
        "<html><head><title>Expenses</title><meta charset=utf-8></head><body>"
        "<nav><a href='/'>Home</a></nav><div role='navigation'>Breadcrumbs</div>"
        "<header><h1>Expense <em>claims</em></h1></header>"
        "<main><p>Claim within <a href='https://hr/claims'>30 days</a>.<br>Keep receipts.</p>"
        "<table><tr><th>Item</th><th>Limit</th></tr><tr><td>Taxi</td><td>50</td></tr></table>"
        "<ol><li>Fill the form</li><li>Attach receipts</li></ol>"
        "<p>\u00a0</p><p></p><p></p><h3>Notes</h3><p>snake_case and 2*3 stay as written</p>"
        "</main><iframe src='x'>frame</iframe><svg><text>logo</text></svg>"
        "<noscript>Enable JavaScript</noscript><template>row</template><button>Share</button>"
        "<footer>Copyright 2026</footer><script>track()</script></body></html>"
    )

    assert title == "Expenses"
    assert text == (
        "# Expense claims\n\n"
        "Claim within 30 days.\nKeep receipts.\n\n"
        "| Item | Limit |\n| --- | --- |\n| Taxi | 50 |\n\n"
        "1. Fill the form\n2. Attach receipts\n\n"
        "### Notes\n\n"
        "snake_case and 2*3 stay as written"
    )


def test_it_keeps_the_text_of_html_nested_too_deep_to_convert() -> None:
    depth = 3000
    _, text = html_to_markdown(
        "<h1>Legacy</h1>" + "<font>" * depth + "buried words" + "</font>" * depth + "<p>after</p>"
    )

    assert text.split() == ["Legacy", "buried", "words", "after"]


@pytest.mark.django_db
def test_it_ingests_the_good_files_beside_a_broken_and_a_scanned_pdf(tmp_path: Path) -> None:
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj\n<< /Type /Cat")
    (tmp_path / "scanned.pdf").write_bytes(pdf_bytes([[]]))
    (tmp_path / "printers.pdf").write_bytes(_GOOD_PDF)
    (tmp_path / "travel.docx").write_bytes(policy_docx_bytes())
    collection = services.collection_create(name="Handbook")
    source = services.source_create(
        collection=collection, kind="path", location=str(tmp_path), queue=False
    )

    source_ingest(source_id=source.pk, embedder=FakeEmbeddings(size=384))

    source.refresh_from_db()
    assert source.status == Source.Status.DONE
    documents = {d.external_id: d for d in Document.objects.filter(source=source)}
    assert documents["broken.pdf"].status == Document.Status.ERROR
    assert documents["broken.pdf"].error.startswith("The PDF could not be read")
    assert documents["scanned.pdf"].status == Document.Status.ERROR
    assert documents["scanned.pdf"].error.startswith("The PDF has no text layer (a scan?)")
    assert (documents["printers.pdf"].status, documents["travel.docx"].status) == ("ok", "ok")
    chunks = Chunk.objects.filter(document__source=source)
    assert chunks.filter(
        document__external_id="printers.pdf", text__contains="blue driver"
    ).exists()
    assert set(
        chunks.filter(document__external_id="travel.docx").values_list("heading", flat=True)
    ) == {"Travel policy", "Travel policy > Booking", "Travel policy > Booking > Hotel limits"}
    assert not chunks.filter(document__status=Document.Status.ERROR).exists()
