"""Personal data, in one place: what counts as personal data (presidio's pattern recognizers, no
NLP model), how it is replaced (typed tags such as <EMAIL_ADDRESS>), and who may read it as written
(`settings.TRACE_PII_POLICY`).

The PII judge flags what `pii_find` finds; training exports and the pages that show questions,
answers and traces replace exactly that, so what the judge flags is what everyone else hides.

Admins add their own kinds (`PiiPattern`: an entity type, a regular expression, context words).
Every turn reads them with the catalogue (`chatbot.agent.routing`, no extra query) and the
process rebuilds its recognizers when they differ from the set it built last, so every worker
picks up an admin's change on its next turn. `pii_find` uses the set the process loaded last: it
runs where the database may not be read, such as the async model call that redacts.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from django.conf import settings

from chatbot.accounts import roles
from chatbot.accounts.visibility import AnyUser
from chatbot.models import PiiPattern

logger = logging.getLogger(__name__)

# IP addresses are left out on purpose: support answers name servers and gateways all the time.
DEFAULT_PII_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN")
DEFAULT_PII_MIN_SCORE = 0.4


@dataclass(frozen=True)
class Finding:
    """One piece of personal data: where it is, what type, how sure the recognizer is."""

    start: int
    end: int
    entity: str
    score: float


@lru_cache(maxsize=1)
def recognizers() -> tuple[Any, ...]:
    """presidio's pattern recognizers, called directly: no NLP engine, so no spaCy model to load.

    The e-mail recognizer checks domains against the public suffix list; ours reads the copy
    shipped with tldextract instead of fetching it over the network on first use.
    """
    import tldextract
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        PhoneRecognizer,
        UsSsnRecognizer,
    )

    offline_tld = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return bool(offline_tld(pattern_text).fqdn)

    return (
        OfflineEmailRecognizer(),
        PhoneRecognizer(),
        CreditCardRecognizer(),
        IbanRecognizer(),
        UsSsnRecognizer(),
    )


# A custom pattern's score: above the default threshold, below a validated built-in's (a card
# number checked by Luhn wins an overlap).
CUSTOM_SCORE = 0.6


# How far before a custom match its context words are looked for.
CONTEXT_CHARS = 60


@dataclass(frozen=True)
class PatternSet:
    version: str
    recognizers: tuple[Any, ...] = ()
    # {entity: context words}: a match counts only with one of them shortly before it.
    context: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def entities(self) -> tuple[str, ...]:
        return tuple(r.supported_entities[0] for r in self.recognizers)


_patterns = PatternSet(version="")


def pattern_recognizer(*, entity: str, regex: str) -> Any:
    # Context words are ours to check (`_in_context`): presidio applies them only through its
    # NLP engine, which we do not load.
    from presidio_analyzer import Pattern, PatternRecognizer

    return PatternRecognizer(
        supported_entity=entity,
        patterns=[Pattern(name=entity.lower(), regex=regex, score=CUSTOM_SCORE)],
    )


def _in_context(text: str, start: int, words: tuple[str, ...]) -> bool:
    before = text[max(0, start - CONTEXT_CHARS) : start].lower()
    return not words or any(w.lower() in before for w in words)


def patterns_use(rows: Iterable[Mapping[str, Any]]) -> PatternSet:
    """Make `rows` (each a pattern's entity, regex and context, as read from the database) the
    set `pii_find` uses; rebuilt only when they differ from the set in use. A pattern that no
    longer compiles is skipped and logged; the console checks it on save."""
    global _patterns
    ordered = sorted(
        (str(r["entity"]), str(r["regex"]), tuple(str(w) for w in r.get("context") or () if w))
        for r in rows
    )
    version = json.dumps(ordered)
    if version == _patterns.version:
        return _patterns
    built, context = [], {}
    for entity, regex, words in ordered:
        try:
            re.compile(regex)
        except re.error as exc:
            logger.warning("PII pattern %s does not compile: %s", entity, exc)
            continue
        built.append(pattern_recognizer(entity=entity, regex=regex))
        context[entity] = words
    _patterns = PatternSet(version=version, recognizers=tuple(built), context=context)
    return _patterns


def patterns_load() -> PatternSet:
    """The admins' enabled patterns, read now (one query). A turn reads them with the catalogue
    instead (`chatbot.agent.routing`), so routing costs no extra query."""
    return patterns_use(
        PiiPattern.objects.filter(enabled=True).values("entity", "regex", "context")
    )


def pii_find(
    text: str,
    *,
    entities: Iterable[str] = DEFAULT_PII_ENTITIES,
    min_score: float = DEFAULT_PII_MIN_SCORE,
) -> list[Finding]:
    """Every finding of the wanted types (and the admins' own, always) at or above `min_score`,
    overlaps included, in order."""
    if not text:
        return []
    custom = _patterns
    wanted = {*entities, *custom.entities}
    found: list[Finding] = []
    for recognizer in (*recognizers(), *custom.recognizers):
        types = [e for e in recognizer.supported_entities if e in wanted]
        if not types:
            continue
        for result in recognizer.analyze(text, entities=types, nlp_artifacts=None):
            words = custom.context.get(result.entity_type, ())
            if result.score >= min_score and _in_context(text, result.start, words):
                found.append(
                    Finding(result.start, result.end, result.entity_type, float(result.score))
                )
    found.sort(key=lambda f: (f.start, f.entity))
    return found


def _without_overlaps(found: list[Finding]) -> list[Finding]:
    # Recognizers overlap (a card number also looks like a phone number): keep the longest,
    # then the most confident, and drop whatever overlaps a span already kept.
    ranked = sorted(found, key=lambda f: (-(f.end - f.start), -f.score, f.start))
    kept: list[Finding] = []
    for finding in ranked:
        if all(finding.end <= k.start or finding.start >= k.end for k in kept):
            kept.append(finding)
    return sorted(kept, key=lambda f: f.start)


@dataclass
class Scrubber:
    """Replaces personal data with tags such as <EMAIL_ADDRESS> and counts what it replaced."""

    entities: tuple[str, ...] = DEFAULT_PII_ENTITIES
    min_score: float = DEFAULT_PII_MIN_SCORE
    redacted: int = 0

    def __call__(self, text: str) -> str:
        if not text:
            return text
        spans = _without_overlaps(pii_find(text, entities=self.entities, min_score=self.min_score))
        for finding in reversed(spans):
            text = f"{text[: finding.start]}<{finding.entity}>{text[finding.end :]}"
        self.redacted += len(spans)
        return text


def pii_visible(user: AnyUser) -> bool:
    """Whether `user` reads personal data as written on the product's pages."""
    policy = settings.TRACE_PII_POLICY
    if policy == "show":
        return True
    return policy == "admins" and user.is_authenticated and user.has_perm(roles.MANAGE_SETTINGS)


def _unchanged(text: str) -> str:
    return text


def redactor(user: AnyUser) -> Callable[[str], str]:
    """Text as `user` may see it on pages (traces, review items, replays): as written, or with
    personal data replaced by typed tags."""
    if pii_visible(user):
        return _unchanged
    patterns_load()  # pages hide the admins' kinds too, as they are now
    scrub = Scrubber()
    return lambda text: scrub(text) if text else text
