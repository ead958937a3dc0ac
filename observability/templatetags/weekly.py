"""Filters for the weekly report and the drift panel: a change as a person reads it."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def pts(delta: float | None) -> str:
    """A change of a rate, in percentage points: +1.2 pts; a dash when either week had none."""
    if delta is None:
        return "—"
    return f"{delta * 100:+.1f} pts"


@register.filter
def signed(delta: float | None, digits: int = 3) -> str:
    """A change with its sign: +0.031; a dash when either week had none."""
    if delta is None:
        return "—"
    return f"{delta:+.{digits}f}"


@register.filter
def trend(delta: float | None, better: str) -> str:
    """A CSS class for a change: `delta-good`, `delta-bad` or `` (no change, or no direction)."""
    if not delta or better not in {"up", "down"}:
        return ""
    return "delta-good" if (delta > 0) == (better == "up") else "delta-bad"


@register.filter
def kappa(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
