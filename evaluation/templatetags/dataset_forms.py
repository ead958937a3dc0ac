"""The one-click "add this reviewed turn to a dataset" form, for any page that shows a review:
`{% load dataset_forms %}{% add_to_dataset_form review %}`. It posts to
`review:dataset_add_review` and comes back to the page it was on."""

from __future__ import annotations

from typing import Any

from django import template

from chatbot.models import Dataset, Review

register = template.Library()


@register.inclusion_tag("datasets/_add_to_dataset.html", takes_context=True)
def add_to_dataset_form(context: template.Context, review: Review) -> dict[str, Any]:
    request = context.get("request")
    return {
        "review": review,
        "usable": review.approved or bool(review.corrected_answer.strip()),
        "datasets": Dataset.objects.order_by("name").only("pk", "name"),
        "already_in": sorted(
            {item.dataset.name for item in review.dataset_items.select_related("dataset")}
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
