"""Split a document into chunks of about KB_CHUNK_WORDS words, each with its heading.

Markdown (and html/docx, converted to markdown by the parsers) is first cut at its headings, so a
chunk never straddles two sections and carries "Document title > Section > Subsection" as its
heading; full-text search weights that heading above the body.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter

HEADING_SEPARATOR = " > "
# Bump when the splitting below changes what chunks a document gets: ingestion then re-indexes
# every document on its next run (`splitting_signature`).
SPLITTER_FORMAT = 1
MAX_HEADING = 500
_HEADER_LEVELS = [("#", "h1"), ("##", "h2"), ("###", "h3"), ("####", "h4")]
# Text without spaces (base64, long URLs) has few "words": count every 12 characters as one too,
# so no chunk grows far past what the embedding model reads.
_CHARS_PER_WORD_CAP = 12


@dataclass(frozen=True)
class TextChunk:
    heading: str
    text: str

    def embedding_text(self) -> str:
        return f"{self.heading}\n{self.text}" if self.heading else self.text


def word_length(text: str) -> int:
    return max(len(text.split()), len(text) // _CHARS_PER_WORD_CAP)


def _sizes() -> tuple[int, int]:
    """The chunk size and overlap in words the settings ask for, as the splitter applies them."""
    words = max(settings.KB_CHUNK_WORDS, 1)
    return words, min(max(settings.KB_CHUNK_OVERLAP_WORDS, 0), words // 2)


def splitting_signature() -> str:
    """What decides a document's chunks besides its text: the splitter's format and sizes."""
    words, overlap = _sizes()
    return f"split{SPLITTER_FORMAT}:{words}/{overlap}"


def _size_splitter() -> RecursiveCharacterTextSplitter:
    words, overlap = _sizes()
    return RecursiveCharacterTextSplitter(
        chunk_size=words,
        chunk_overlap=overlap,
        length_function=word_length,
        separators=["\n\n", "\n", ". ", " ", ""],
        keep_separator="end",
        strip_whitespace=True,
    )


def _heading(title: str, sections: list[str]) -> str:
    parts = [title.strip()] if title.strip() else []
    for section in sections:
        section = " ".join(section.split())
        # A markdown file's H1 is usually its title: don't say it twice.
        if section and (not parts or section.lower() != parts[-1].lower()):
            parts.append(section)
    heading = HEADING_SEPARATOR.join(parts)
    return heading if len(heading) <= MAX_HEADING else heading[: MAX_HEADING - 1] + "…"


def split_document(*, title: str, text: str, markdown: bool) -> list[TextChunk]:
    sections: list[tuple[list[str], str]]
    if markdown:
        header_splitter = MarkdownHeaderTextSplitter(
            headers_to_split_on=_HEADER_LEVELS, strip_headers=True
        )
        sections = [
            ([str(doc.metadata[key]) for _, key in _HEADER_LEVELS if key in doc.metadata],
             doc.page_content)
            for doc in header_splitter.split_text(text)
        ]  # fmt: skip
    else:
        sections = [([], text)]
    splitter = _size_splitter()
    chunks: list[TextChunk] = []
    for path, body in sections:
        heading = _heading(title, path)
        for piece in splitter.split_text(body):
            if piece.strip():
                chunks.append(TextChunk(heading=heading, text=piece.strip()))
    return chunks
