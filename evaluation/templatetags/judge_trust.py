"""A judge's agreement with the human reviews, as a badge with κ and n: `{% load judge_trust %}`
then `{% judge_trust judge %}` (the console's judges pages and the review item page)."""

from __future__ import annotations

from typing import Any

from django import template

from chatbot.models import Judge
from evaluation.review.agreement import trust_note

register = template.Library()


@register.inclusion_tag("_judge_trust.html")
def judge_trust(judge: Judge) -> dict[str, Any]:
    return {
        "judge": judge,
        "note": trust_note(judge.trust_state, judge.trust_kappa, judge.trust_pairs),
    }
