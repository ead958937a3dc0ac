from __future__ import annotations

from typing import Any

from django import forms

from chatbot.models import Export


class ExportForm(forms.Form):
    kind = forms.ChoiceField(
        label="What to export",
        choices=Export.Kind.choices,
        initial=Export.Kind.SFT,
        widget=forms.RadioSelect,
    )
    date_from = forms.DateField(
        label="Turns from",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Blank starts with the first turn.",
    )
    date_to = forms.DateField(
        label="Turns until (inclusive)",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Blank runs to today.",
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            raise forms.ValidationError("The start date is after the end date.")
        return cleaned
