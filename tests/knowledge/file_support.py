"""Real PDF and Word files made on the fly, so no binary fixtures live in the repository."""

from __future__ import annotations

import io

import docx
from pypdf import PdfWriter


def _pdf_string(text: str) -> bytes:
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return b"(" + escaped.encode("latin-1") + b")"


def pdf_bytes(pages: list[list[str] | None], *, title: str = "") -> bytes:
    """A minimal valid PDF written by hand: each page draws its lines in Helvetica; a page with
    no lines draws a grey box instead, like a scan (something on the page, no text layer); a
    page given as None has a content stream in an encoding no reader knows (a broken page)."""
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    }
    kids: list[int] = []
    number = 4
    for lines in pages:
        page_id, content_id = number, number + 1
        number += 2
        if lines is None:
            ops = [b"BT", b"/F1 12 Tf", b"72 720 Td", b"(lost) Tj", b"ET"]
        elif lines:
            ops = [b"BT", b"/F1 12 Tf", b"14 TL", b"72 720 Td"]
            ops += [_pdf_string(line) + b" Tj T*" for line in lines]
            ops.append(b"ET")
        else:
            ops = [b"0.5 g", b"72 72 400 600 re f"]
        stream = b"\n".join(ops)
        encoding = b"/Filter /NoSuchDecode " if lines is None else b""
        objects[content_id] = b"<< %b/Length %d >>\nstream\n%b\nendstream" % (
            encoding,
            len(stream),
            stream,
        )
        objects[page_id] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % content_id
        )
        kids.append(page_id)
    refs = b" ".join(b"%d 0 R" % kid for kid in kids)
    objects[2] = b"<< /Type /Pages /Kids [%b] /Count %d >>" % (refs, len(kids))
    trailer = b"<< /Size %d /Root 1 0 R" % (number + (1 if title else 0))
    if title:
        objects[number] = b"<< /Title %b >>" % _pdf_string(title)
        trailer += b" /Info %d 0 R" % number
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}
    for key in sorted(objects):
        offsets[key] = len(out)
        out += b"%d 0 obj\n%b\nendobj\n" % (key, objects[key])
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (max(objects) + 1)
    for key in range(1, max(objects) + 1):
        out += b"%010d 00000 n \n" % offsets[key]
    out += b"trailer\n%b >>\nstartxref\n%d\n%%%%EOF\n" % (trailer, xref)
    return bytes(out)


def encrypted_pdf_bytes(data: bytes, *, password: str) -> bytes:
    writer = PdfWriter(clone_from=io.BytesIO(data))
    writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="AES-256")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def policy_docx_bytes() -> bytes:
    """A Word document with a Title, two headings, a bulleted list and a table."""
    document = docx.Document()
    document.add_paragraph("Travel policy", style="Title")
    document.add_paragraph("Who may travel and how to book.")
    document.add_heading("Booking", level=1)
    document.add_paragraph("Book every trip through the travel portal.")
    document.add_paragraph("Flights in economy", style="List Bullet")
    document.add_paragraph("Trains in second class", style="List Bullet")
    document.add_heading("Hotel limits", level=2)
    table = document.add_table(rows=3, cols=2)
    for row, (city, limit) in enumerate(
        [("City", "Per night"), ("Paris", "180 EUR"), ("Oslo", "2000 NOK")]
    ):
        table.cell(row, 0).text = city
        table.cell(row, 1).text = limit
    document.add_paragraph("Receipts go to finance within 30 days.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()
