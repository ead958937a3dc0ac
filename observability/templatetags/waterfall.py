"""`{% trace_for turn spans as trace %}`: the waterfall of a turn, for `dashboard/_trace.html`, so
any page (the trace page, the review item page) can include the partial with a turn and its spans."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import template

from chatbot.accounts.visibility import CollectionGate
from chatbot.models import Span, Turn
from observability.waterfall import Trace, trace_build

register = template.Library()


@register.simple_tag(takes_context=True)
def trace_for(context: dict[str, Any], turn: Turn, spans: Iterable[Span] | None = None) -> Trace:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None:
        from django.contrib.auth.models import AnonymousUser

        user = AnonymousUser()
    # An include without `spans` passes the template engine's empty string: load them here.
    chosen = turn.spans.order_by("started_at") if spans is None or spans == "" else spans
    return trace_build(turn=turn, spans=chosen, user=user)


@register.simple_tag(takes_context=True)
def may_read(context: template.Context, collection_id: int | None) -> bool:
    """Whether the viewer may read a passage of this collection; one gate (one query) per page."""
    gate = context.get("_collection_gate")
    if gate is None:
        request = context.get("request")
        user = getattr(request, "user", None)
        if user is None:
            from django.contrib.auth.models import AnonymousUser

            user = AnonymousUser()
        gate = CollectionGate(user)
        # The root context lives as long as the page's render, so every include shares the gate.
        context.dicts[0]["_collection_gate"] = gate
    return gate.allows(collection_id)


@register.filter
def ms(value: float | None) -> str:
    """A duration a person reads at a glance: 0.31 ms, 850 ms, 1.24 s, 2 min 5 s."""
    if value is None:
        return "—"
    if value < 10:
        return f"{value:.2g} ms"
    if value < 1000:
        return f"{value:.0f} ms"
    if value < 60_000:
        return f"{value / 1000:.2f} s"
    minutes, seconds = divmod(value / 1000, 60)
    return f"{minutes:.0f} min {seconds:.0f} s"


@register.filter
def pct(value: float | None, digits: int = 1) -> str:
    """A share as a percentage, or a dash when there was nothing to count."""
    if value is None:
        return "—"
    return f"{value * 100:.{digits}f}%"
