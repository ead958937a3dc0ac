"""Template filters for times stored as text: a JSON log keeps each entry's time as an ISO 8601
string (`timezone.now().isoformat()`), which a page shows as the rest of it shows times."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template
from django.utils.dateparse import parse_datetime

register = template.Library()


@register.filter(name="iso_datetime")
def iso_datetime_filter(value: Any) -> datetime | str:
    """ "2026-12-01T06:49:13.635534+00:00" -> that aware datetime, for the `date` filter (which
    shows it in the current time zone). Text that is not such a time comes back unchanged, so an
    odd entry still shows what it holds; None becomes ""."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value
    text = str(value)
    try:
        parsed = parse_datetime(text)
    except ValueError:  # well formed but out of range, such as month 13
        return text
    return parsed if parsed is not None else text
