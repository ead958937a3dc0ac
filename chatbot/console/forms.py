from __future__ import annotations

from typing import Any

from django import forms

from chatbot.agent import vocabulary
from chatbot.llm.prompts import TemplateError, template_validate
from chatbot.llm.registry import PROVIDERS
from chatbot.models import AssistantSettings, ModelEndpoint


class ModelEndpointForm(forms.ModelForm):
    # Model servers on a private network are usually plain http; never guess https.
    base_url = forms.URLField(
        label="Base URL",
        required=False,
        assume_scheme="http",
        help_text="Blank uses the provider's default.",
    )
    options = forms.JSONField(
        required=False,
        initial=dict,
        help_text='Provider settings as JSON, e.g. {"stop": ["\\nQuestion:"]}.',
        widget=forms.Textarea(attrs={"rows": 3}),
    )

    class Meta:
        model = ModelEndpoint
        fields = [
            "name",
            "provider",
            "base_url",
            "model_id",
            "api_key_name",
            "style",
            "prompt_template",
            "price_input_per_mtok",
            "price_output_per_mtok",
            "context_window",
            "max_output_tokens",
            "temperature",
            "region",
            "personal_data_allowed",
            "capable_judge",
            "tool_calling",
            "enabled",
            "options",
        ]
        widgets = {"prompt_template": forms.Textarea(attrs={"rows": 4})}
        labels = {
            "base_url": "Base URL",
            "model_id": "Model ID (as the server names it)",
            "api_key_name": "API key variable",
            "price_input_per_mtok": "Input price per 1M tokens",
            "price_output_per_mtok": "Output price per 1M tokens",
            "context_window": "Context window (tokens)",
            "max_output_tokens": "Max output tokens",
        }

    def clean_options(self) -> dict[str, Any]:
        value = self.cleaned_data.get("options") or {}
        if not isinstance(value, dict):
            raise forms.ValidationError('Options must be a JSON object, such as {"stop": []}.')
        return value

    def clean_temperature(self) -> float:
        value = float(self.cleaned_data["temperature"])
        if not 0 <= value <= 2:
            raise forms.ValidationError("Temperature must be between 0 and 2.")
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        provider = data.get("provider")
        if provider and provider not in PROVIDERS:
            self.add_error("provider", "This provider is not available.")
        if data.get("style") == ModelEndpoint.Style.COMPLETION:
            try:
                template_validate(data.get("prompt_template") or "")
            except TemplateError as exc:
                self.add_error("prompt_template", str(exc))
        if (
            data.get("tool_calling") == ModelEndpoint.ToolCalling.NATIVE
            and data.get("style") == ModelEndpoint.Style.COMPLETION
        ):
            self.add_error(
                "tool_calling",
                "Native tool calling needs a chat-style model; a completion-style one chooses "
                "by filling the step schema (structured choice).",
            )
        if provider == ModelEndpoint.Provider.ANTHROPIC and not data.get("api_key_name"):
            self.add_error(
                "api_key_name", "Anthropic needs the name of the variable holding its key."
            )
        if (
            provider == ModelEndpoint.Provider.OPENAI
            and not data.get("base_url")
            and not data.get("api_key_name")
        ):
            self.add_error(
                "base_url", "Give the server's URL, or an API key name to use OpenAI's own service."
            )
        return data


class AssistantSettingsForm(forms.ModelForm):
    retrieval_k = vocabulary.retrieval_k_field()
    min_similarity = vocabulary.min_similarity_field()
    min_coverage = vocabulary.min_coverage_field()
    min_answerable = vocabulary.min_answerable_field()
    cache_similarity = forms.FloatField(
        label="Cache: similar questions from",
        min_value=0.0,
        max_value=1.0,
        help_text=AssistantSettings._meta.get_field("cache_similarity").help_text,
    )

    class Meta:
        model = AssistantSettings
        fields = [
            "grounding",
            "retrieval_k",
            "min_similarity",
            "min_coverage",
            "min_answerable",
            "max_steps",
            "no_answer_message",
            "cache_enabled",
            "cache_similarity",
        ]
        widgets = {
            "grounding": forms.RadioSelect,
            "no_answer_message": forms.Textarea(attrs={"rows": 3}),
        }
        labels = {"grounding": "Grounding", "no_answer_message": "When nothing is relevant, say"}

    def clean_max_steps(self) -> int:
        value = int(self.cleaned_data["max_steps"])
        if not 1 <= value <= 8:
            raise forms.ValidationError("Allow between 1 and 8 steps per turn.")
        return value

    def clean_no_answer_message(self) -> str:
        message = str(self.cleaned_data["no_answer_message"]).strip()
        if not message:
            raise forms.ValidationError("Write what the assistant says when it doesn't know.")
        return message
