"""Reading the jsonl files offline evaluation works on, one JSON object a line.

Every reader goes through `json_rows`, so a bad line is reported the same way everywhere: its
number (and its file, when there is one) and what is wrong with it. Blank lines are skipped.

The shapes:
- a document (../shared/evalsets `documents.jsonl`): `{"id", "text", "title"?, "url"?, ...}`;
- a question with the documents that answer it: FAQ `{"id", "query", "relevant_doc_ids"}` or
  COVID-QA `{"id", "question", "answers": [...], "doc_id"}`;
- a gold question, whose answers are measured: the COVID-QA shape, answers required;
- a dataset item (imports): either question shape plus `"unanswerable"?`, or a plain item
  `{"question", "expected_answer" or "answer", "context"?}`. Keys we have no column for (such as
  `doc_id`) are kept in `metadata`. The whole file is read before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

MAX_ITEMS = 20_000
MAX_FIELD_CHARS = 100_000
_ITEM_KEYS = {
    "id",
    "question",
    "query",
    "answers",
    "answer",
    "expected_answer",
    "context",
    "unanswerable",
    "metadata",
}


class BadJsonlFile(ValueError):
    """A jsonl file that cannot be read; the message names the line and what is wrong with it."""


# --- lines ---------------------------------------------------------------------------------------


def _at(source: str, number: int) -> str:
    # A file on disk is named the way compilers name it (path:line); an upload has only its line.
    return f"{source}:{number}: " if source else f"Line {number}: "


class Row(NamedTuple):
    number: int
    at: str  # what an error about this line starts with
    data: dict[str, Any]


def json_rows(lines: Iterable[bytes | str], *, source: str = "") -> Iterator[Row]:
    """Each non-blank line as a JSON object."""
    for number, raw in enumerate(lines, start=1):
        at = _at(source, number)
        try:
            line = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError:
            raise BadJsonlFile(f"{at}not UTF-8 text.") from None
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadJsonlFile(f"{at}not valid JSON ({exc.msg}).") from None
        if not isinstance(row, dict):
            raise BadJsonlFile(f"{at}not a JSON object.")
        yield Row(number, at, row)


def file_rows(path: Path) -> Iterator[Row]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise BadJsonlFile(f"Cannot read {path}: {exc.strerror or exc}.") from None
    with handle:
        yield from json_rows(handle, source=str(path))


# --- fields --------------------------------------------------------------------------------------


def _text(row: dict[str, Any], key: str, at: str) -> str:
    value = row.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadJsonlFile(f"{at}'{key}' must be text.")
    if len(value) > MAX_FIELD_CHARS:
        raise BadJsonlFile(f"{at}'{key}' is longer than {MAX_FIELD_CHARS} characters.")
    return value.strip()


def _question_text(row: dict[str, Any], at: str) -> str:
    # `query` is the FAQ files' name for the question.
    return _text(row, "question", at) or _text(row, "query", at)


def _answers(row: dict[str, Any], at: str) -> list[str]:
    value = row.get("answers")
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise BadJsonlFile(f"{at}'answers' must be a list of texts.")
    return [a.strip() for a in value if a.strip()]


def _doc_ids(row: dict[str, Any]) -> frozenset[str]:
    relevant = row.get("relevant_doc_ids")
    if isinstance(relevant, list) and relevant:
        return frozenset(map(str, relevant))
    doc_id = row.get("doc_id")
    return frozenset() if doc_id is None else frozenset({str(doc_id)})


def _row_id(row: Row) -> str:
    """The row's id, or its line number when it has none."""
    value = row.data.get("id")
    return str(row.number) if value is None else str(value)


# --- documents and questions ---------------------------------------------------------------------


def load_documents(path: Path) -> dict[str, dict[str, Any]]:
    """The documents by id, in file order, each as its whole line."""
    documents: dict[str, dict[str, Any]] = {}
    for row in file_rows(path):
        doc_id, text = row.data.get("id"), row.data.get("text")
        if doc_id is None or str(doc_id).strip() == "" or not isinstance(text, str):
            raise BadJsonlFile(f"{row.at}a document needs 'id' and 'text'")
        documents[str(doc_id)] = row.data
    return documents


@dataclass(frozen=True)
class Question:
    """A question and the documents that answer it (retrieval is measured on those)."""

    id: str
    text: str
    relevant: frozenset[str]


def load_questions(path: Path, *, limit: int | None = None) -> list[Question]:
    """Questions in either shape, up to `limit`."""
    questions: list[Question] = []
    for row in file_rows(path):
        if limit is not None and len(questions) >= limit:
            break
        text, relevant = _question_text(row.data, row.at), _doc_ids(row.data)
        if not text or not relevant:
            raise BadJsonlFile(
                f"{row.at}needs 'query' and 'relevant_doc_ids', or 'question' and 'doc_id'"
            )
        questions.append(Question(_row_id(row), text, relevant))
    return questions


@dataclass(frozen=True)
class GoldQuestion:
    """A question with its gold answers and the one document they come from."""

    id: str
    text: str
    answers: tuple[str, ...]
    doc_id: str


def load_gold_questions(path: Path) -> list[GoldQuestion]:
    questions: list[GoldQuestion] = []
    for row in file_rows(path):
        text, answers = _question_text(row.data, row.at), _answers(row.data, row.at)
        doc_id = row.data.get("doc_id")
        if not text or not answers or doc_id is None:
            raise BadJsonlFile(
                f"{row.at}needs 'question', 'answers' (a list of strings) and 'doc_id'"
            )
        questions.append(GoldQuestion(_row_id(row), text, tuple(answers), str(doc_id)))
    return questions


# --- dataset items -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemData:
    question: str
    expected_answer: str = ""
    answers: tuple[str, ...] = ()
    context: str = ""
    unanswerable: bool = False
    external_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


def _context(row: dict[str, Any], at: str) -> str:
    value = row.get("context")
    if isinstance(value, list) and all(isinstance(part, str) for part in value):
        # Several passages: kept apart the way a prompt's numbered sources are.
        return "\n\n".join(part.strip() for part in value if part.strip())
    return _text(row, "context", at)


def item_from_row(row: dict[str, Any], at: str = "") -> ItemData:
    """One dataset item; `at` prefixes an error with where the row came from."""
    question = _question_text(row, at)
    if not question:
        raise BadJsonlFile(f"{at}needs a 'question' (non-empty text).")
    answers = _answers(row, at)
    expected = _text(row, "expected_answer", at) or _text(row, "answer", at)
    if expected and expected not in answers:
        answers.insert(0, expected)
    expected = expected or (answers[0] if answers else "")
    unanswerable = row.get("unanswerable", False)
    if not isinstance(unanswerable, bool):
        raise BadJsonlFile(f"{at}'unanswerable' must be true or false.")
    metadata = row.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise BadJsonlFile(f"{at}'metadata' must be a JSON object.")
    metadata = {**{k: v for k, v in row.items() if k not in _ITEM_KEYS}, **metadata}
    external_id = row.get("id")
    return ItemData(
        question=question,
        expected_answer=expected,
        answers=tuple(answers),
        context=_context(row, at),
        unanswerable=unanswerable,
        external_id="" if external_id is None else str(external_id)[:200],
        metadata=metadata,
    )


def load_items(lines: Iterable[bytes | str]) -> list[ItemData]:
    """Every item of an import (lines named by number: an upload has no path to show), or
    `BadJsonlFile` for the first bad line."""
    items: list[ItemData] = []
    for row in json_rows(lines):
        items.append(item_from_row(row.data, row.at))
        if len(items) > MAX_ITEMS:
            raise BadJsonlFile(f"The file holds more than {MAX_ITEMS} items; split it.")
    if not items:
        raise BadJsonlFile("The file holds no items (one JSON object a line).")
    return items
