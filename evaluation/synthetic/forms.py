"""Forms for synthetic questions: asking for a run, and a reviewer's decision on a candidate."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.models import AnonymousUser, User

from chatbot.accounts.visibility import collections_visible_to
from chatbot.models import Collection, Dataset, ModelEndpoint, SyntheticCandidate
from evaluation.synthetic import services


class GenerateForm(forms.Form):
    dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.order_by("name"),
        help_text="Accepted questions are added here, one dataset version per question.",
    )
    collection = forms.ModelChoiceField(
        label="Knowledge-base collection",
        queryset=Collection.objects.none(),
        help_text="Only collections shared with you are listed.",
    )
    sample_size = forms.IntegerField(
        label="Chunks to sample",
        min_value=1,
        max_value=services.MAX_SAMPLE,
        initial=20,
        help_text=f"1 to {services.MAX_SAMPLE}. The whole collection when it has fewer; the "
        "same collection version and number give the same chunks.",
    )
    endpoint = forms.ModelChoiceField(
        label="Model",
        queryset=ModelEndpoint.objects.filter(enabled=True).order_by("name"),
        help_text="From the model catalogue. It must be able to follow instructions and write "
        "JSON; the routing rules (regions, confidential collections) apply to it.",
    )
    kinds = forms.MultipleChoiceField(
        label="What to generate",
        choices=SyntheticCandidate.Kind.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[c[0] for c in SyntheticCandidate.Kind.choices],
    )
    variants_per_chunk = forms.IntegerField(
        label="Variants per chunk",
        min_value=1,
        max_value=services.MAX_VARIANTS,
        initial=3,
        help_text="Questions the chunk answers, each with its answer from the chunk.",
    )
    negatives_per_chunk = forms.IntegerField(
        label="Hard negatives per chunk",
        min_value=1,
        max_value=services.MAX_NEGATIVES,
        initial=1,
        help_text="On-topic questions the chunk does not answer: the assistant should refuse "
        "or escalate.",
    )

    def __init__(self, *args: Any, user: User | AnonymousUser, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        collection_field = self.fields["collection"]
        assert isinstance(collection_field, forms.ModelChoiceField)
        collection_field.queryset = collections_visible_to(user).order_by("name")
        if "endpoint" not in self.initial:
            self.initial["endpoint"] = ModelEndpoint.objects.filter(
                enabled=True, is_default=True
            ).first()


class DecisionForm(forms.Form):
    """Accept (with the question and answer as the reviewer left them) or reject."""

    action = forms.ChoiceField(choices=[("accept", "Accept"), ("reject", "Reject")])
    question = forms.CharField(
        required=False, max_length=services.QUESTION_LIMIT, widget=forms.Textarea(attrs={"rows": 3})
    )
    expected_answer = forms.CharField(
        required=False, max_length=services.ANSWER_LIMIT, widget=forms.Textarea(attrs={"rows": 5})
    )
    reason = forms.CharField(required=False, max_length=500, label="Why reject (optional)")
