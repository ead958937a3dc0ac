"""Reversible redaction: personal data replaced by numbered placeholders before text leaves for an
endpoint that may not see it, and put back in what that endpoint answers.

Built on the analyzer spans `pii_find` already gives (presidio-anonymizer is not installed, and
a reversible mapping is a dictionary). One `Placeholders` serves a whole turn, so the same value
is the same placeholder in every message and every call: the model can still tell that two
mentions are one person's address. It keeps the values in memory only; what is recorded (spans,
the turn) is `counts`, types and numbers, never a value.

Limits: only what the recognizers find is replaced (pattern recognizers, no NLP model, so names
are not found unless an admin adds a pattern for them); a value the model paraphrases or splits
cannot be restored.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from chatbot.compliance.pii import _without_overlaps, pii_find

# What a placeholder looks like: <EMAIL_ADDRESS_1>. Anything else in angle brackets is left alone.
PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*?)_(\d+)>")
# A streamed piece may end inside a placeholder ("<EMAIL_AD"): hold back a tail that could still
# become one, never longer than the longest placeholder could be.
_PARTIAL = re.compile(r"<[A-Z0-9_]*$")
_LONGEST = 64


@dataclass
class Placeholders:
    """One turn's mapping between values and placeholders (see the module docstring)."""

    by_value: dict[tuple[str, str], str] = field(default_factory=dict)
    by_placeholder: dict[str, str] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)

    def hide(self, text: str) -> str:
        if not text:
            return text
        # Numbered in reading order, replaced from the end so earlier offsets stay true.
        found = _without_overlaps(pii_find(text))
        named = [(f, self._placeholder(f.entity, text[f.start : f.end])) for f in found]
        for finding, placeholder in reversed(named):
            text = f"{text[: finding.start]}{placeholder}{text[finding.end :]}"
        return text

    def _placeholder(self, entity: str, value: str) -> str:
        key = (entity, value)
        if key not in self.by_value:
            self.counts[entity] += 1
            placeholder = f"<{entity}_{self.counts[entity]}>"
            self.by_value[key] = placeholder
            self.by_placeholder[placeholder] = value
        return self.by_value[key]

    def reveal(self, text: str) -> str:
        if not self.by_placeholder or "<" not in text:
            return text
        return PLACEHOLDER.sub(lambda m: self.by_placeholder.get(m.group(0), m.group(0)), text)

    def restorer(self) -> StreamRestorer:
        return StreamRestorer(self)

    @property
    def redacted(self) -> dict[str, int]:
        """What was replaced, as {entity type: how many distinct values}: safe to record."""
        return dict(sorted(self.counts.items()))


@dataclass
class StreamRestorer:
    """Restores placeholders in a stream whose pieces may split one ("<EMAIL_" + "ADDRESS_1>")."""

    placeholders: Placeholders
    held: str = ""

    def feed(self, text: str) -> str:
        text = self.held + text
        self.held = ""
        partial = _PARTIAL.search(text)
        if partial is not None and len(text) - partial.start() < _LONGEST:
            text, self.held = text[: partial.start()], text[partial.start() :]
        return self.placeholders.reveal(text)

    def flush(self) -> str:
        rest, self.held = self.held, ""
        return self.placeholders.reveal(rest)


def redacted_summary(counts: dict[str, int]) -> str:
    """The chat's note, in words: "1 email address, 2 phone numbers"."""
    parts = []
    for entity, count in sorted(counts.items()):
        plain = entity.replace("_", " ").lower()
        one, many = ENTITY_WORDS.get(entity, (plain, plain))
        parts.append(f"{count} {one if count == 1 else many}")
    return ", ".join(parts)


ENTITY_WORDS = {
    "EMAIL_ADDRESS": ("email address", "email addresses"),
    "PHONE_NUMBER": ("phone number", "phone numbers"),
    "CREDIT_CARD": ("card number", "card numbers"),
    "IBAN_CODE": ("IBAN", "IBANs"),
    "US_SSN": ("social security number", "social security numbers"),
    "PERSON": ("name", "names"),
}
