"""Template filters for personal data: the chat's note on an answer whose question had personal
data replaced before it left for a model."""

from __future__ import annotations

from typing import Any

from django import template

from chatbot.compliance.redact import redacted_summary

register = template.Library()


@register.filter(name="redacted_summary")
def redacted_summary_filter(counts: Any) -> str:
    """{"EMAIL_ADDRESS": 1} → "1 email address"; "" for anything else (nothing was replaced)."""
    if not isinstance(counts, dict) or not counts:
        return ""
    return redacted_summary({str(k): int(v) for k, v in counts.items()})
