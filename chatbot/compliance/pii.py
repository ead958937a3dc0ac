"""Personal data, in one place: what counts as personal data (presidio's pattern recognizers, no
NLP model), how it is replaced (typed tags such as <EMAIL_ADDRESS>), and who may read it as written
(`settings.TRACE_PII_POLICY`).

The PII judge flags what `pii_find` finds; training exports and the pages that show questions,
answers and traces replace exactly that, so what the judge flags is what everyone else hides.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings

from chatbot.accounts import roles
from chatbot.accounts.visibility import AnyUser

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


def pii_find(
    text: str,
    *,
    entities: Iterable[str] = DEFAULT_PII_ENTITIES,
    min_score: float = DEFAULT_PII_MIN_SCORE,
) -> list[Finding]:
    """Every finding of the wanted types at or above `min_score`, overlaps included, in order."""
    if not text:
        return []
    wanted = set(entities)
    found: list[Finding] = []
    for recognizer in recognizers():
        types = [e for e in recognizer.supported_entities if e in wanted]
        if not types:
            continue
        for result in recognizer.analyze(text, entities=types, nlp_artifacts=None):
            if result.score >= min_score:
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
    scrub = Scrubber()
    return lambda text: scrub(text) if text else text
