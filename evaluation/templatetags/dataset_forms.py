"""The one-click "add this to a dataset" forms: `{% load dataset_forms %}` then
`{% add_to_dataset_form review %}` on any page that shows a review, or
`{% add_escalation_to_dataset_form escalation %}` for an answered escalation. Each posts to its
`review:dataset_add_*` view and comes back to the page it was on."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse

from chatbot.models import Dataset, Escalation, Review

register = template.Library()


@register.inclusion_tag("datasets/_add_to_dataset.html", takes_context=True)
def add_to_dataset_form(context: template.Context, review: Review) -> dict[str, Any]:
    return _form(
        context,
        action=reverse("review:dataset_add_review", args=[review.pk]),
        prefix=f"review-{review.pk}",
        usable=review.approved or bool(review.corrected_answer.strip()),
        hint="Write a corrected answer or approve the answer to turn this into a dataset item.",
        items=review.dataset_items,
    )


@register.inclusion_tag("datasets/_add_to_dataset.html", takes_context=True)
def add_escalation_to_dataset_form(
    context: template.Context, escalation: Escalation
) -> dict[str, Any]:
    """The same form for an escalation: its human reply becomes the expected answer."""
    return _form(
        context,
        action=reverse("review:dataset_add_escalation", args=[escalation.pk]),
        prefix=f"escalation-{escalation.pk}",
        usable=bool(escalation.answer.strip()),
        hint="Reply to the escalation to turn it into a dataset item.",
        items=escalation.dataset_items,
    )


def _form(
    context: template.Context,
    *,
    action: str,
    prefix: str,
    usable: bool,
    hint: str,
    items: Any,
) -> dict[str, Any]:
    request = context.get("request")
    return {
        "action": action,
        "prefix": prefix,
        "usable": usable,
        "hint": hint,
        "datasets": Dataset.objects.order_by("name").only("pk", "name"),
        "already_in": sorted(
            {
                item.dataset.name
                for item in items.filter(removed_in__isnull=True).select_related("dataset")
            }
        ),
        "next": request.get_full_path() if request is not None else "",
        "csrf_token": context.get("csrf_token"),
    }


METRIC_NAMES = {
    "token_f1": "token F1",
    "containment": "containment",
    "refusal_correct": "refused correctly",
}


@register.filter
def metric_name(label: str) -> str:
    """A reference metric's readable name; judge labels pass through unchanged."""
    return METRIC_NAMES.get(label, label)
