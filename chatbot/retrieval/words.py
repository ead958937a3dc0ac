"""Content words of a text, shared by the no-answer decision (how much of a question the retrieved
passages cover) and the word-overlap faithfulness judge (how much of an answer they support).

A content word is a lower-cased alphanumeric word of three or more characters that is not a
stopword, with a plural "s" stripped so "passwords" matches "password".
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_WORD = re.compile(r"[a-z0-9]+")
_STOPWORD_TEXT = """
a about above after again all also am an and any are as at be been before being below between
both but by can could did do does doing down during each few for from further had has have
having he her here hers him his how i if in into is it its itself just me more most my no nor
not now of off on once only or other our ours out over own same she should so some such than
that the their theirs them then there these they this those through to too under until up very
was we were what when where which while who whom why will with would you your yours
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def _normal(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def content_words(text: str) -> list[str]:
    return [_normal(w) for w in _WORD.findall(text.lower()) if len(w) >= 3 and w not in STOPWORDS]


def coverage(question: str, passages: Iterable[str]) -> float:
    """The share of the question's distinct content words that appear in the passages (1.0 for a
    question with none). Measured on ../shared/evalsets, it tells a question the knowledge base
    can answer from one it can't much better than the passages' similarity alone: a passage on
    the same topic is similar, but it lacks the question's specific terms."""
    wanted = set(content_words(question))
    if not wanted:
        return 1.0
    found: set[str] = set()
    for passage in passages:
        found.update(content_words(passage))
    return len(wanted & found) / len(wanted)
