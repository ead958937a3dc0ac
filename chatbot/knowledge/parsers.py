"""Turn files into raw documents: text, markdown, html, docx, pdf, jsonl and csv (documents or
tickets).

A bad file never stops a source: it becomes a `RawDocument` with `error` set (which ingestion stores
as a document in error), and a bad line inside a jsonl or csv file is reported through `log`.
HTML and docx are converted to markdown-style text ('#' headings) so splitting is heading-aware;
a PDF gives its text layer as plain text.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from chatbot.knowledge.markup import (
    BadFile,
    docx_to_markdown,
    html_to_markdown,
    markdown_title,
    pdf_to_text,
)

# (level, message): "info", "warning" or "error".
LogFn = Callable[[str, str], None]

TEXT_TYPES = {".txt", ".text"}
MARKDOWN_TYPES = {".md", ".markdown"}
HTML_TYPES = {".html", ".htm"}
RECORD_TYPES = {".jsonl", ".csv"}
SUPPORTED_TYPES = TEXT_TYPES | MARKDOWN_TYPES | HTML_TYPES | RECORD_TYPES | {".docx", ".pdf"}
# Types people will try that we recognise but cannot read: say so on the document.
KNOWN_UNSUPPORTED = {
    ".doc": "Old Word .doc files are not supported. Save the file as .docx and add it again.",
}
MAX_EXTERNAL_ID = 500
MAX_TITLE = 500


class SourceUnavailable(Exception):
    """The source as a whole cannot be read (missing path, unreadable folder)."""


@dataclass
class RawDocument:
    external_id: str
    title: str
    text: str
    url: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    # True when headings are marked with '#' (markdown, and html/docx converted to it).
    markdown: bool = False
    error: str = ""


def supported_types_text() -> str:
    return ", ".join(sorted(SUPPORTED_TYPES))


def parse_location(location: str, *, kind: str, log: LogFn) -> list[RawDocument]:
    """Every document at `location` (a file, or a folder searched recursively)."""
    path = Path(location)
    if not path.exists():
        raise SourceUnavailable(f"The path {location} does not exist on the server.")
    if path.is_file():
        return list(parse_file(path, external_id=path.name, kind=kind, log=log))
    if not path.is_dir():
        raise SourceUnavailable(f"The path {location} is neither a file nor a folder.")
    documents: list[RawDocument] = []
    skipped: Counter[str] = Counter()
    try:
        files = sorted(p for p in path.rglob("*") if p.is_file())
    except OSError as exc:
        raise SourceUnavailable(f"The folder {location} cannot be read: {exc}.") from exc
    for file in files:
        relative = file.relative_to(path)
        if any(part.startswith(".") for part in relative.parts):
            continue
        suffix = file.suffix.lower()
        if suffix not in SUPPORTED_TYPES and suffix not in KNOWN_UNSUPPORTED:
            skipped[suffix or "(no extension)"] += 1
            continue
        documents.extend(parse_file(file, external_id=relative.as_posix(), kind=kind, log=log))
    if skipped:
        listed = ", ".join(f"{ext} ({n})" for ext, n in sorted(skipped.items()))
        log("warning", f"Skipped {sum(skipped.values())} files of unsupported type: {listed}.")
    return documents


def parse_file(path: Path, *, external_id: str, kind: str, log: LogFn) -> Iterator[RawDocument]:
    try:
        yield from _parse_file(path, external_id=external_id, kind=kind, log=log)
    except BadFile as exc:
        yield RawDocument(
            external_id=external_id[:MAX_EXTERNAL_ID], title=path.name, text="", error=str(exc)
        )


def _parse_file(path: Path, *, external_id: str, kind: str, log: LogFn) -> Iterator[RawDocument]:
    suffix = path.suffix.lower()
    if suffix in KNOWN_UNSUPPORTED:
        raise BadFile(KNOWN_UNSUPPORTED[suffix])
    if suffix not in SUPPORTED_TYPES:
        raise BadFile(
            f"Unsupported file type {suffix or '(no extension)'!r}; "
            f"supported types are {supported_types_text()}."
        )
    data = _read(path)
    if suffix == ".docx":
        title, text = docx_to_markdown(data)
        yield _document(external_id, title or path.stem, text, markdown=True)
        return
    if suffix == ".pdf":
        pdf = pdf_to_text(data)
        if pdf.unreadable_pages:
            log(
                "warning",
                f"{external_id}: {pdf.unreadable_pages} page(s) could not be decoded and were "
                "left out.",
            )
        yield _document(external_id, pdf.title or path.stem, pdf.text)
        return
    text = decode_text(data)
    if suffix in TEXT_TYPES:
        yield _document(external_id, path.stem, text)
    elif suffix in MARKDOWN_TYPES:
        yield _document(external_id, markdown_title(text) or path.stem, text, markdown=True)
    elif suffix in HTML_TYPES:
        title, body = html_to_markdown(text)
        yield _document(external_id, title or path.stem, body, markdown=True)
    else:
        records = _records(text, suffix=suffix, where=external_id, log=log)
        found = False
        for number, record in records:
            document = (
                ticket_document(record, where=f"{external_id}:{number}")
                if kind == "tickets" or _looks_like_ticket(record)
                else record_document(
                    record, where=f"{external_id}:{number}", tabular=suffix == ".csv"
                )
            )
            if document is None:
                log("warning", f"{external_id} line {number}: no text, skipped.")
                continue
            found = True
            yield document
        if not found:
            raise BadFile("The file holds no usable records (see the ingestion log).")


def _read(path: Path) -> bytes:
    limit = settings.KB_MAX_FILE_BYTES
    size = path.stat().st_size
    if size > limit:
        raise BadFile(f"The file is too large ({size:,} bytes); the limit is {limit:,} bytes.")
    if size == 0:
        raise BadFile("The file is empty.")
    return path.read_bytes()


def decode_text(data: bytes) -> str:
    if b"\x00" in data:
        raise BadFile("The file looks binary, not text (it contains NUL bytes).")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadFile(
            f"The file is not UTF-8 text (undecodable byte at offset {exc.start})."
        ) from None
    if not text.strip():
        raise BadFile("The file is empty.")
    return text


def _document(external_id: str, title: str, text: str, *, markdown: bool = False) -> RawDocument:
    if not text.strip():
        raise BadFile("The file has no text.")
    return RawDocument(
        external_id=external_id[:MAX_EXTERNAL_ID],
        title=title.strip()[:MAX_TITLE],
        text=text,
        markdown=markdown,
    )


# --- jsonl and csv records --------------------------------------------------------------------


def _records(
    text: str, *, suffix: str, where: str, log: LogFn
) -> Iterator[tuple[int, dict[str, Any]]]:
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames:
            raise BadFile("The CSV file has no header row.")
        for row in reader:
            clean = {
                (k or "").strip().lower(): (v or "").strip() if isinstance(v, str) else v
                for k, v in row.items()
            }
            yield reader.line_num, clean
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            log("error", f"{where} line {number}: not valid JSON ({exc.msg}), skipped.")
            continue
        if not isinstance(record, dict):
            log("error", f"{where} line {number}: expected a JSON object, skipped.")
            continue
        yield number, record


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.strip() if isinstance(value, str) else str(value)


def _record_id(record: dict[str, Any], where: str) -> str:
    raw = _text(record.get("id"))
    return (raw or where)[:MAX_EXTERNAL_ID]


def _metadata(record: dict[str, Any]) -> dict[str, Any]:
    value = record.get("metadata")
    return dict(value) if isinstance(value, dict) else {}


def record_document(record: dict[str, Any], *, where: str, tabular: bool) -> RawDocument | None:
    """A jsonl `{"id","title","text","url"?,"metadata"?}` line, or a generic csv row."""
    if tabular and "text" not in record:
        # A plain table: each row reads as "column: value" lines.
        lines = [f"{k}: {_text(v)}" for k, v in record.items() if k and _text(v)]
        text = "\n".join(lines)
        title = _text(record.get("title") or record.get("name") or "")
    else:
        text = _text(record.get("text"))
        title = _text(record.get("title"))
    if not text:
        return None
    return RawDocument(
        external_id=_record_id(record, where),
        title=title[:MAX_TITLE],
        text=text,
        url=_text(record.get("url")),
        metadata=_metadata(record),
    )


def _looks_like_ticket(record: dict[str, Any]) -> bool:
    return "subject" in record and "body" in record and "text" not in record


def _tags(value: Any) -> list[str]:
    if isinstance(value, list):
        return [_text(t) for t in value if _text(t)]
    return [t.strip() for t in re.split(r"[,;|]", _text(value)) if t.strip()]


def ticket_document(record: dict[str, Any], *, where: str) -> RawDocument | None:
    """A past support ticket: the problem and how it was resolved, searchable together."""
    subject, body = _text(record.get("subject")), _text(record.get("body"))
    resolution = _text(record.get("resolution"))
    if not (subject or body):
        return None
    text = f"Problem: {body or subject}\nResolution: {resolution or '(none recorded)'}"
    metadata = _metadata(record)
    metadata["tags"] = _tags(record.get("tags"))
    return RawDocument(
        external_id=_record_id(record, where),
        title=(subject or body.split("\n")[0])[:MAX_TITLE],
        text=text,
        url=_text(record.get("url")),
        metadata=metadata,
    )
