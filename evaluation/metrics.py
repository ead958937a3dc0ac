"""Answer metrics, as pure functions: SQuAD-style token F1, containment of the gold answer's
content words, and whether an answer is a refusal ("I don't know")."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable

from chatbot.retrieval.citations import strip_citations as strip_citations
from chatbot.retrieval.words import STOPWORDS

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
CONTAINS_AT = 0.5


def normalize(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def tokens(text: str) -> list[str]:
    return normalize(text).split()


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD's token F1 of one prediction against one gold answer."""
    predicted, expected = tokens(prediction), tokens(gold)
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def max_f1(prediction: str, golds: Iterable[str]) -> float:
    return max((token_f1(prediction, gold) for gold in golds), default=0.0)


def content_words(text: str) -> set[str]:
    """The normalised words of `text` less stop words (all its words when only stop words)."""
    words = set(tokens(text))
    return (words - STOPWORDS) or words


def containment(prediction: str, golds: Iterable[str]) -> float:
    """The best share, over the gold answers, of a gold answer's content words found in the
    prediction."""
    found = set(tokens(prediction))
    best = 0.0
    for gold in golds:
        wanted = content_words(gold)
        if wanted:
            best = max(best, len(wanted & found) / len(wanted))
    return best


def contains(prediction: str, golds: Iterable[str]) -> bool:
    return containment(prediction, golds) >= CONTAINS_AT


# --- refusals ------------------------------------------------------------------------------------

_WHERE = r"(?:sources?|context|documents?|knowledge base|texts?|passages?|articles?|information)"
_REFUSALS = [
    re.compile(pattern)
    for pattern in (
        r"\bi (?:do|did) not know\b",
        r"\b(?:cannot|could not|can not|unable to|not able to) (?:find|answer|determine|tell|say|locate|know)\b",
        rf"\b{_WHERE}\b[^.?!]{{0,40}}\b(?:do|does|did) not (?:say|mention|contain|answer|provide|specify|state|include|have|give|address|cover|discuss|tell)\b",
        rf"\bnot (?:mentioned|stated|specified|provided|covered|found|given|answered|available|included) in (?:the |any |these |those )?{_WHERE}",
        r"\b(?:no|not enough|insufficient) (?:relevant )?information\b",
        rf"\bnot in (?:the |any )?{_WHERE}",
        r"\b(?:will not|would not|cannot) guess\b",
    )
]
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
REFUSAL_SCOPE_SENTENCES = 2


def _plain(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(
        r"\b(can|won)'t\b", lambda m: "cannot" if m.group(1) == "can" else "will not", text
    )
    return text.replace("n't", " not")


def is_refusal(answer: str) -> bool:
    """True when the answer says it doesn't know in its opening sentences, or says nothing.

    Only the opening counts: an answer that gives facts and then adds "the sources do not say
    more" answered the question.
    """
    plain = _plain(answer).strip()
    if not plain:
        return True
    opening = " ".join(_SENTENCE_END.split(plain)[:REFUSAL_SCOPE_SENTENCES])
    return any(pattern.search(opening) for pattern in _REFUSALS)
