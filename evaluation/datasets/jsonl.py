"""Reading dataset items from jsonl, one object a line.

Two shapes are accepted, and may be mixed:
- the ../shared/evalsets question files: `{"id", "question", "answers": [...], "doc_id",
  "unanswerable"?}` (keys we have no column for, such as `doc_id`, are kept in `metadata`);
- a plain item: `{"question", "expected_answer" or "answer", "context"?}`.
`query` is read as `question` so the FAQ query files import too (they carry no answers).

The whole file is checked before anything is written: a bad line stops the import with its number.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MAX_ITEMS = 20_000
MAX_FIELD_CHARS = 100_000
_KNOWN = {
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


class BadDatasetFile(ValueError):
    """The file cannot be imported; the message names the line and what is wrong with it."""


@dataclass(frozen=True)
class ItemData:
    question: str
    expected_answer: str = ""
    answers: tuple[str, ...] = ()
    context: str = ""
    unanswerable: bool = False
    external_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


def _text(row: dict[str, Any], key: str, number: int) -> str:
    value = row.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadDatasetFile(f"Line {number}: '{key}' must be text.")
    if len(value) > MAX_FIELD_CHARS:
        raise BadDatasetFile(f"Line {number}: '{key}' is longer than {MAX_FIELD_CHARS} characters.")
    return value.strip()


def _answers(row: dict[str, Any], number: int) -> list[str]:
    value = row.get("answers")
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise BadDatasetFile(f"Line {number}: 'answers' must be a list of texts.")
    return [a.strip() for a in value if a.strip()]


def _context(row: dict[str, Any], number: int) -> str:
    value = row.get("context")
    if isinstance(value, list) and all(isinstance(part, str) for part in value):
        # Several passages: kept apart the way a prompt's numbered sources are.
        return "\n\n".join(part.strip() for part in value if part.strip())
    return _text(row, "context", number)


def item_from_row(row: Any, number: int) -> ItemData:
    if not isinstance(row, dict):
        raise BadDatasetFile(f"Line {number}: not a JSON object.")
    question = _text(row, "question", number) or _text(row, "query", number)
    if not question:
        raise BadDatasetFile(f"Line {number}: needs a 'question' (non-empty text).")
    answers = _answers(row, number)
    expected = _text(row, "expected_answer", number) or _text(row, "answer", number)
    if expected and expected not in answers:
        answers.insert(0, expected)
    expected = expected or (answers[0] if answers else "")
    unanswerable = row.get("unanswerable", False)
    if not isinstance(unanswerable, bool):
        raise BadDatasetFile(f"Line {number}: 'unanswerable' must be true or false.")
    metadata = row.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise BadDatasetFile(f"Line {number}: 'metadata' must be a JSON object.")
    metadata = {**{k: v for k, v in row.items() if k not in _KNOWN}, **metadata}
    external_id = row.get("id")
    return ItemData(
        question=question,
        expected_answer=expected,
        answers=tuple(answers),
        context=_context(row, number),
        unanswerable=unanswerable,
        external_id="" if external_id is None else str(external_id)[:200],
        metadata=metadata,
    )


def parse_lines(lines: Iterable[bytes | str]) -> list[ItemData]:
    """Every item in the file, or `BadDatasetFile` for the first bad line."""
    items: list[ItemData] = []
    for number, raw in enumerate(lines, start=1):
        try:
            line = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError:
            raise BadDatasetFile(f"Line {number}: not UTF-8 text.") from None
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadDatasetFile(f"Line {number}: not valid JSON ({exc.msg}).") from None
        items.append(item_from_row(row, number))
        if len(items) > MAX_ITEMS:
            raise BadDatasetFile(f"The file holds more than {MAX_ITEMS} items; split it.")
    if not items:
        raise BadDatasetFile("The file holds no items (one JSON object a line).")
    return items
