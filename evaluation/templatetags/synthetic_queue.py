"""The review queue's line about the other kind of item waiting for reviewers: synthetic
questions (`{% load synthetic_queue %}{% synthetic_waiting %}`). One count query, limited to the
collections the reviewer may read."""

from __future__ import annotations

from typing import Any

from django import template

from evaluation.synthetic.selectors import pending_count_for

register = template.Library()


@register.inclusion_tag("synthetic/_queue_note.html", takes_context=True)
def synthetic_waiting(context: template.Context) -> dict[str, Any]:
    request = context.get("request")
    user = getattr(request, "user", None)
    waiting = pending_count_for(user) if user is not None and user.is_authenticated else 0
    return {"waiting": waiting}
