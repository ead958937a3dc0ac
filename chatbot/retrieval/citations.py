"""How an answer cites its numbered sources: [1], [2, 3]. One pattern for the turn loop (which
sources an answer cited), the chat page (links to them), the judges and the answer metrics."""

from __future__ import annotations

import re

CITATION = re.compile(r"\[(\d{1,2}(?:\s*,\s*\d{1,2})*)\]")


def citation_numbers(text: str) -> list[int]:
    """Every source number cited in `text`, in order of appearance, repeats included."""
    return [int(part) for match in CITATION.finditer(text) for part in match.group(1).split(",")]


def strip_citations(text: str) -> str:
    """The text without its [1], [2, 3] markers (gold answers never carry them)."""
    return CITATION.sub(" ", text)
