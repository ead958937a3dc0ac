from __future__ import annotations

from typing import Any

from django import forms

from chatbot.models import Dataset, Export, FineTuneJob, ModelEndpoint
from evaluation.finetune.services import DEFAULTS


class FineTuneForm(forms.Form):
    export = forms.ModelChoiceField(
        queryset=Export.objects.filter(status=Export.Status.DONE, rows_written__gt=0).order_by(
            "-pk"
        ),
        label="Training export",
        empty_label="Choose a finished export",
    )
    method = forms.ChoiceField(
        choices=FineTuneJob.Method.choices,
        initial=FineTuneJob.Method.SFT,
        widget=forms.RadioSelect,
        help_text="Supervised needs a fine-tuning export; DPO a preference-pairs export.",
    )
    backend = forms.ChoiceField(
        choices=FineTuneJob.Backend.choices,
        initial=FineTuneJob.Backend.LOCAL,
        widget=forms.RadioSelect,
    )
    base_model = forms.CharField(
        max_length=500,
        label="Base model",
        help_text="Local: the path of a Hugging Face model folder on the workers. Hosted: the "
        "provider's model name (e.g. gpt-4o-mini-2024-07-18).",
    )
    hosted_via = forms.ModelChoiceField(
        queryset=ModelEndpoint.objects.filter(provider=ModelEndpoint.Provider.OPENAI).order_by(
            "name"
        ),
        required=False,
        label="Hosted API",
        empty_label="— (local backend)",
        help_text="Hosted only: the catalogue entry whose base URL and API key reach the fine-tuning API.",
    )
    epochs = forms.IntegerField(min_value=1, max_value=50, initial=DEFAULTS["epochs"])
    max_steps = forms.IntegerField(
        min_value=0,
        initial=DEFAULTS["max_steps"],
        label="Max steps",
        help_text="0: the epochs decide.",
    )
    learning_rate = forms.FloatField(
        min_value=1e-7, max_value=0.5, initial=DEFAULTS["learning_rate"]
    )
    batch_size = forms.IntegerField(min_value=1, max_value=512, initial=DEFAULTS["batch_size"])
    lora_r = forms.IntegerField(
        min_value=1, max_value=256, initial=DEFAULTS["lora_r"], label="LoRA rank"
    )
    lora_alpha = forms.IntegerField(
        min_value=1, max_value=512, initial=DEFAULTS["lora_alpha"], label="LoRA alpha"
    )
    beta = forms.FloatField(
        min_value=0.001,
        max_value=10,
        initial=DEFAULTS["beta"],
        label="DPO beta",
        help_text="DPO only.",
    )
    merge = forms.BooleanField(
        required=False,
        initial=True,
        label="Merge the adapter into the weights",
        help_text="Local only. Unticked, the adapter alone is saved and served on its base.",
    )

    HYPERPARAMETERS = (
        "epochs",
        "max_steps",
        "learning_rate",
        "batch_size",
        "lora_r",
        "lora_alpha",
        "beta",
        "merge",
    )

    def hyperparameters(self) -> dict[str, Any]:
        return {name: self.cleaned_data[name] for name in self.HYPERPARAMETERS}


class PromotionForm(forms.Form):
    dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.order_by("name"),
        label="Dataset for the offline experiment",
        empty_label="Choose a dataset",
    )
