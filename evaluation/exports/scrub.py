"""Cleaning rows before they leave the product: personal data replaced by typed tags, and a
normalised fingerprint so the same example is written once.

Pure functions, no database. The recognizers are the PII judge's (presidio pattern recognizers,
no NLP model), so an export scrubs exactly what the judge would flag.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

from evaluation.judges import DEFAULT_PII_ENTITIES, DEFAULT_PII_MIN_SCORE, _pii_recognizers

_WORD = re.compile(r"\w+")


@dataclass
class Scrubber:
    """Replaces personal data with tags such as <EMAIL_ADDRESS> and counts what it replaced."""

    entities: tuple[str, ...] = DEFAULT_PII_ENTITIES
    min_score: float = DEFAULT_PII_MIN_SCORE
    redacted: int = 0

    def __call__(self, text: str) -> str:
        if not text:
            return text
        spans = self._find(text)
        for start, end, entity in reversed(spans):
            text = f"{text[:start]}<{entity}>{text[end:]}"
        self.redacted += len(spans)
        return text

    def _find(self, text: str) -> list[tuple[int, int, str]]:
        found: list[tuple[int, int, str, float]] = []
        for recognizer in _pii_recognizers():
            wanted = [e for e in recognizer.supported_entities if e in self.entities]
            if not wanted:
                continue
            for result in recognizer.analyze(text, entities=wanted, nlp_artifacts=None):
                if result.score >= self.min_score:
                    found.append((result.start, result.end, result.entity_type, result.score))
        # Recognizers overlap (a card number also looks like a phone number): keep the longest,
        # then the most confident, and drop whatever overlaps a span already kept.
        found.sort(key=lambda f: (-(f[1] - f[0]), -f[3], f[0]))
        kept: list[tuple[int, int, str]] = []
        for start, end, entity, _ in found:
            if all(end <= s or start >= e for s, e, _ in kept):
                kept.append((start, end, entity))
        return sorted(kept)


def normalised(text: str) -> str:
    """Case, width, spacing and punctuation removed: "Click *Reset*." equals "click reset"."""
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).casefold()))


def fingerprint(*parts: str) -> str:
    """A stable hash of the normalised parts; the separator keeps ("ab", "c") apart from ("a", "bc")."""
    joined = "\x1f".join(normalised(p) for p in parts)
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()
