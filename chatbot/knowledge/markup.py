"""HTML, Word and PDF files as text; HTML and Word become markdown-style text ('#' headings) so that
splitting can follow their headings. Each reader is a well-kept library; this module only picks
what to keep and turns the library's failures into a `BadFile` with a message a person understands.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from typing import NamedTuple

import docx
from bs4 import BeautifulSoup
from django.conf import settings
from docx.document import Document as DocxDocument
from docx.oxml.ns import qn
from docx.oxml.xmlchemy import BaseOxmlElement
from docx.table import Table
from docx.text.paragraph import Paragraph
from markdownify import ATX, MarkdownConverter
from pypdf import PdfReader
from pypdf.errors import PyPdfError


class BadFile(Exception):
    """This one file cannot be used; the message is shown on its document."""


def markdown_title(text: str) -> str:
    """The first level-1 heading outside code fences."""
    fenced = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced:
            match = re.fullmatch(r"#\s+(.+?)\s*#*", stripped)
            if match:
                return match.group(1)
    return ""


def _tidy(text: str) -> str:
    """No trailing spaces, no runs of blank lines, no control characters Postgres would refuse."""
    text = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "", text.replace("\r\n", "\n"))
    text = "\n".join(line.rstrip() for line in text.replace("\r", "\n").splitlines())
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --- html ---------------------------------------------------------------------------------------

# Page furniture, not content: scripts, embedded objects, menus, footers, form controls.
_NOISE_TAGS = [
    "head", "script", "style", "noscript", "template", "svg", "iframe", "object", "embed",
    "canvas", "nav", "footer", "button", "select",
]  # fmt: skip
_NOISE_ROLES = {"navigation", "contentinfo", "search"}
# Kept as their plain text: link targets, image sources and emphasis marks are noise to search.
_PLAIN_TAGS = ["a", "img", "b", "strong", "i", "em", "u", "mark", "small", "abbr", "span"]
_CONVERTER = MarkdownConverter(
    heading_style=ATX,
    bullets="-",
    strip=_PLAIN_TAGS,
    escape_asterisks=False,
    escape_underscores=False,
    escape_misc=False,
)


def html_to_markdown(html: str) -> tuple[str, str]:
    """(title, text with '#' headings) from an HTML page; scripts, menus and footers dropped."""
    soup = BeautifulSoup(html, "lxml")
    title = _one_line(soup.title.get_text()) if soup.title else ""
    if not title:
        h1 = soup.find("h1")
        title = _one_line(h1.get_text()) if h1 else ""
    for node in soup.find_all(_NOISE_TAGS):
        # A node inside one removed before is already gone (and must not be touched again).
        if not node.decomposed:
            node.decompose()
    for node in soup.find_all(role=True):
        if not node.decomposed and str(node.get("role", "")).lower() in _NOISE_ROLES:
            node.decompose()
    try:
        text = _CONVERTER.convert_soup(soup)
    except RecursionError:
        # markdownify recurses once per nesting level; sloppy pages (hundreds of unclosed tags)
        # go deeper than Python allows. Keep their text, without the markdown structure.
        text = soup.get_text("\n")
    return title, _tidy(text)


# --- docx ---------------------------------------------------------------------------------------

_HEADING_STYLE = re.compile(r"(?i)heading\s*([1-9])")


def _check_docx_archive(data: bytes) -> None:
    """Clear messages for what python-docx reports as a bare KeyError or BadZipFile."""
    limit = settings.KB_MAX_FILE_BYTES
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError):
        raise BadFile("The file is not a valid Word (.docx) document (it is not a zip).") from None
    if "word/document.xml" not in names:
        raise BadFile(
            "The file is not a valid Word (.docx) document (the zip has no word/document.xml)."
        )
    if unpacked > 5 * limit:
        raise BadFile("The Word document is too large once unpacked.")


def _heading_level(paragraph: Paragraph) -> int:
    """1-6 for a Title or "Heading N" paragraph (or a style based on one), else 0."""
    style = paragraph.style
    for _ in range(5):  # custom heading styles are usually based on a built-in one
        if style is None:
            return 0
        name = style.name or ""
        if name.lower() == "title":
            return 1
        match = _HEADING_STYLE.fullmatch(name)
        if match:
            return min(int(match.group(1)), 6)
        style = style.base_style
    return 0


def _list_depth(paragraph: Paragraph) -> int | None:
    """Nesting depth of a list item (numbered or bulleted), or None for an ordinary paragraph."""
    if paragraph._p.xpath("./w:pPr/w:numPr"):
        levels = paragraph._p.xpath("./w:pPr/w:numPr/w:ilvl/@w:val")
        return int(levels[0]) if levels and str(levels[0]).isdigit() else 0
    name = (paragraph.style.name or "") if paragraph.style is not None else ""
    if name.lower().startswith("list"):
        level = re.search(r"(\d)$", name)
        return int(level.group(1)) - 1 if level else 0
    return None


def _table_lines(table: Table) -> list[str]:
    lines = []
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            # A merged cell is returned once per grid column it spans: keep it once.
            if previous is not None and cell._tc is previous:
                continue
            previous = cell._tc
            cells.append(_one_line(cell.text))
        if any(cells):
            lines.append(" | ".join(cells))
    return lines


def _body_items(element: BaseOxmlElement, document: DocxDocument) -> Iterator[Paragraph | Table]:
    """Paragraphs and tables in reading order, including those inside content controls (which
    python-docx's own iteration skips), except a generated table of contents."""
    for child in element.iterchildren():
        if child.tag == qn("w:p"):
            yield Paragraph(child, document)
        elif child.tag == qn("w:tbl"):
            yield Table(child, document)
        elif child.tag == qn("w:sdt"):
            gallery = child.find(
                "/".join(qn(t) for t in ("w:sdtPr", "w:docPartObj", "w:docPartGallery"))
            )
            if gallery is not None and (gallery.get(qn("w:val")) or "").lower().startswith(
                "table of contents"
            ):
                continue
            for content in child.iterchildren(qn("w:sdtContent")):
                yield from _body_items(content, document)


def docx_to_markdown(data: bytes) -> tuple[str, str]:
    """(title, text): headings as '#' lines, list items as '- ' lines, table rows as 'a | b'."""
    _check_docx_archive(data)
    try:
        document = docx.Document(io.BytesIO(data))
    except (KeyError, ValueError, zipfile.BadZipFile) as exc:
        detail = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise BadFile(f"The file is not a valid Word (.docx) document ({detail}).") from None
    title = (document.core_properties.title or "").strip()
    # (kind, text): consecutive list items and table rows stay on adjacent lines.
    blocks: list[tuple[str, str]] = []
    for item in _body_items(document.element.body, document):
        if isinstance(item, Table):
            blocks.extend(("table", line) for line in _table_lines(item))
            blocks.append(("break", ""))
            continue
        text = item.text.strip()
        if not text:
            continue
        level = _heading_level(item)
        depth = _list_depth(item) if not level else None
        if level:
            if not title and (item.style is not None and item.style.name == "Title"):
                title = _one_line(text)
            blocks.append(("heading", "#" * level + " " + _one_line(text)))
        elif depth is not None:
            blocks.append(("list", "  " * min(depth, 8) + "- " + text))
        else:
            blocks.append(("paragraph", text))
    pieces: list[str] = []
    previous = ""
    for kind, text in blocks:
        if kind == "break":
            previous = kind
            continue
        if pieces:
            pieces.append("\n" if kind == previous and kind in {"list", "table"} else "\n\n")
        pieces.append(text)
        previous = kind
    return title, _tidy("".join(pieces))


# --- pdf ----------------------------------------------------------------------------------------


def _pdf_unreadable(data: bytes, exc: Exception) -> BadFile:
    if b"%PDF-" not in data[:1024]:
        reason = "it does not start with a PDF header (is it really a PDF?)"
    elif b"%%EOF" not in data[-2048:]:
        reason = "it looks truncated (no end-of-file marker)"
    else:
        reason = str(exc).rstrip(".") or type(exc).__name__
    return BadFile(f"The PDF could not be read: {reason}.")


class PdfText(NamedTuple):
    title: str  # from the PDF's metadata; often empty
    text: str  # every page's text, a blank line between pages
    unreadable_pages: int  # pages that failed to decode and were left out


def pdf_to_text(data: bytes) -> PdfText:
    """The text layer of a PDF. A scan without one, or a file pypdf cannot open, is a BadFile."""
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise BadFile(
                "The PDF could not be read: it is encrypted with a password. "
                "Remove the password and add it again."
            )
        pages = list(reader.pages)
    except BadFile:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise _pdf_unreadable(data, exc) from None
    texts: list[str] = []
    failed = 0
    for page in pages:
        try:
            texts.append(_tidy(page.extract_text()))
        # pypdf reads untrusted bytes: a broken page may fail in many ways; keep the others.
        except Exception:
            failed += 1
    if failed and failed == len(pages):
        raise BadFile("The PDF could not be read: none of its pages could be decoded.")
    text = "\n\n".join(t for t in texts if t)
    if not any(ch.isalnum() for ch in text):
        raise BadFile(
            "The PDF has no text layer (a scan?): no text could be extracted from its "
            f"{len(pages)} page(s). Run it through OCR and add it again."
        )
    try:
        title = _one_line(str(reader.metadata.title or "")) if reader.metadata else ""
    except (PyPdfError, ValueError, KeyError, TypeError):
        title = ""
    return PdfText(title=title, text=text, unreadable_pages=failed)
