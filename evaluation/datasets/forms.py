from __future__ import annotations

from pathlib import Path
from typing import Any

from django import forms
from django.contrib.auth.models import AnonymousUser, User
from django.core.files.uploadedfile import UploadedFile

from chatbot.accounts.visibility import collections_visible_to
from chatbot.agent import vocabulary
from chatbot.agent.grounding import assistant_settings
from chatbot.models import (
    AssistantSettings,
    Collection,
    Dataset,
    Experiment,
    ModelEndpoint,
    Turn,
)

MAX_IMPORT_BYTES = 10 * 1024 * 1024


class DatasetForm(forms.Form):
    name = forms.CharField(max_length=120)
    description = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}), max_length=2000
    )


class ImportForm(forms.Form):
    file = forms.FileField(
        label="jsonl file",
        help_text='One JSON object a line: {"question", "answers": [...]} (the evalsets format) '
        'or {"question", "expected_answer", "context"}. At most 10 MB.',
    )
    name = forms.CharField(
        label="Dataset name",
        max_length=120,
        required=False,
        help_text="A new dataset is created; an existing name gets the items as a new version.",
    )

    def __init__(self, *args: Any, dataset: Dataset | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dataset = dataset
        if dataset is not None:
            del self.fields["name"]

    def clean_file(self) -> UploadedFile:
        upload: UploadedFile = self.cleaned_data["file"]
        suffix = Path(upload.name or "").suffix.lower()
        if suffix not in {".jsonl", ".json", ".ndjson"}:
            raise forms.ValidationError(
                f"Files of type “{suffix or 'none'}” can't be imported; use a .jsonl file."
            )
        if not upload.size:
            raise forms.ValidationError("The file is empty.")
        if upload.size > MAX_IMPORT_BYTES:
            raise forms.ValidationError("The file is too large; the limit is 10 MB.")
        head = upload.read(8192)
        upload.seek(0)
        if b"\x00" in head:
            raise forms.ValidationError("The file looks binary, not jsonl text.")
        return upload

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if (
            self.dataset is None
            and not (cleaned.get("name") or "").strip()
            and "name" in self.fields
        ):
            upload = cleaned.get("file")
            if upload is not None:
                cleaned["name"] = Path(upload.name or "dataset").stem[:120]
        return cleaned


class FromReviewForm(forms.Form):
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.order_by("name"), required=False)
    new_dataset = forms.CharField(label="or a new dataset named", max_length=120, required=False)
    next = forms.CharField(required=False, widget=forms.HiddenInput)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not cleaned.get("dataset") and not (cleaned.get("new_dataset") or "").strip():
            raise forms.ValidationError("Choose a dataset or name a new one.")
        return cleaned


class ExperimentForm(forms.Form):
    name = forms.CharField(
        max_length=200, required=False, help_text="Blank names it after the dataset and model."
    )
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.order_by("name"))
    endpoint = forms.ModelChoiceField(
        label="Model",
        queryset=ModelEndpoint.objects.filter(enabled=True).order_by("name"),
        help_text="From the model catalogue.",
    )
    prompt_template = forms.CharField(
        label="System prompt",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        max_length=20_000,
        help_text="Blank uses the product's default system prompt.",
    )
    grounding = forms.ChoiceField(choices=AssistantSettings.Grounding.choices)
    k = vocabulary.retrieval_k_field()
    min_similarity = vocabulary.min_similarity_field()
    min_coverage = vocabulary.min_coverage_field()
    min_answerable = vocabulary.min_answerable_field()
    collections = forms.ModelMultipleChoiceField(
        queryset=Collection.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked searches every collection you can see.",
    )
    kb_as_of_turn = forms.IntegerField(
        label="Knowledge base as of turn #",
        required=False,
        min_value=1,
        help_text="Blank: the knowledge base as it is now. A turn number: as it was when that "
        "turn ran (the versions it read).",
    )

    def __init__(self, *args: Any, user: User | AnonymousUser, **kwargs: Any) -> None:
        saved = assistant_settings()
        kwargs.setdefault(
            "initial",
            {
                "grounding": saved.grounding,
                "k": saved.retrieval_k,
                "min_similarity": saved.min_similarity,
                "min_coverage": saved.min_coverage,
                "min_answerable": saved.min_answerable,
                "endpoint": ModelEndpoint.objects.filter(enabled=True, is_default=True).first(),
            },
        )
        super().__init__(*args, **kwargs)
        field = self.fields["collections"]
        assert isinstance(field, forms.ModelMultipleChoiceField)
        field.queryset = collections_visible_to(user).order_by("name")

    def clean_kb_as_of_turn(self) -> Turn | None:
        number = self.cleaned_data.get("kb_as_of_turn")
        if number is None:
            return None
        turn = Turn.objects.filter(pk=number).first()
        if turn is None:
            raise forms.ValidationError(f"There is no turn #{number}.")
        return turn

    def retrieval(self) -> dict[str, Any]:
        data = self.cleaned_data
        chosen = data.get("collections")
        return {
            "grounding": data["grounding"],
            "k": data["k"],
            "min_similarity": data["min_similarity"],
            "min_coverage": data["min_coverage"],
            "min_answerable": data["min_answerable"],
            "collections": [c.pk for c in chosen] if chosen else None,
        }


class CompareForm(forms.Form):
    a = forms.ModelChoiceField(
        label="Baseline (A)",
        queryset=Experiment.objects.filter(status=Experiment.Status.DONE).order_by("-created_at"),
        error_messages={"invalid_choice": "Choose a finished experiment."},
    )
    b = forms.ModelChoiceField(
        label="Candidate (B)",
        queryset=Experiment.objects.filter(status=Experiment.Status.DONE).order_by("-created_at"),
        error_messages={"invalid_choice": "Choose a finished experiment."},
    )
    tolerance = forms.FloatField(
        min_value=0,
        max_value=1,
        required=False,
        help_text="A score must move by more than this to count as a win, loss or change.",
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("a") is not None and cleaned.get("a") == cleaned.get("b"):
            raise forms.ValidationError("Choose two different experiments.")
        return cleaned
