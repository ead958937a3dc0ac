"""Forms of the dashboard area. Filters arrive in the query string, so a view can be shared."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django import forms
from django.contrib.auth.models import Group
from django.utils import timezone

from chatbot.models import AlertRule, Collection, Conversation, ModelEndpoint, Turn

MAX_DAYS = 366


def _endpoints() -> Any:
    return ModelEndpoint.objects.order_by("name")


class TurnSearchForm(forms.Form):
    user = forms.CharField(required=False, max_length=150, label="User (username)")
    model = forms.ModelChoiceField(
        queryset=_endpoints(), required=False, label="Model", empty_label="Any model"
    )
    route = forms.CharField(required=False, max_length=120, label="Route contains")
    collection = forms.ModelChoiceField(
        queryset=Collection.objects.order_by("name"),
        required=False,
        label="Collection cited",
        empty_label="Any collection",
    )
    start = forms.DateField(required=False, label="From", widget=forms.DateInput({"type": "date"}))
    end = forms.DateField(required=False, label="To", widget=forms.DateInput({"type": "date"}))
    status = forms.ChoiceField(
        choices=[("", "Any status"), *Turn.Status.choices], required=False, label="Status"
    )
    judge_below = forms.FloatField(
        required=False,
        min_value=0,
        max_value=1,
        label="A judge scored below",
        widget=forms.NumberInput({"step": "0.05", "placeholder": "0-1"}),
    )
    flagged = forms.ChoiceField(
        choices=[("", "Either"), ("yes", "Flagged for review"), ("no", "Not flagged")],
        required=False,
        label="Review flag",
    )
    feedback = forms.ChoiceField(
        choices=[("", "Any"), ("up", "Thumbs up"), ("down", "Thumbs down"), ("none", "None")],
        required=False,
        label="Feedback",
    )
    replays = forms.ChoiceField(
        choices=[
            ("", "Production turns"),
            ("include", "Include replays"),
            ("only", "Replays only"),
        ],
        required=False,
        label="Replays",
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end and start > end:
            raise forms.ValidationError("“From” must be on or before “To”.")
        return cleaned


class DashboardFilterForm(forms.Form):
    start = forms.DateField(required=False, label="From", widget=forms.DateInput({"type": "date"}))
    end = forms.DateField(required=False, label="To", widget=forms.DateInput({"type": "date"}))
    model = forms.ModelChoiceField(
        queryset=_endpoints(), required=False, label="Model", empty_label="All models"
    )
    route = forms.CharField(
        required=False,
        max_length=120,
        label="Route",
        widget=forms.TextInput({"list": "known-routes", "placeholder": "Any route"}),
    )
    collection = forms.ModelChoiceField(
        queryset=Collection.objects.order_by("name"),
        required=False,
        label="Collection",
        empty_label="All collections",
    )
    group = forms.ModelChoiceField(
        queryset=Group.objects.order_by("name"),
        required=False,
        label="User group",
        empty_label="All groups",
    )
    channel = forms.ChoiceField(
        choices=[("", "Web and API"), *Conversation.Channel.choices],
        required=False,
        label="Channel",
    )

    DEFAULT_DAYS = 30

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        today = timezone.now().date()
        end: date = cleaned.get("end") or today
        start: date = cleaned.get("start") or end - timedelta(days=self.DEFAULT_DAYS - 1)
        if start > end:
            raise forms.ValidationError("“From” must be on or before “To”.")
        if (end - start).days + 1 > MAX_DAYS:
            raise forms.ValidationError(f"Choose at most {MAX_DAYS} days at a time.")
        cleaned["start"], cleaned["end"] = start, end
        return cleaned


class ReplayForm(forms.Form):
    endpoint = forms.ModelChoiceField(
        queryset=ModelEndpoint.objects.filter(enabled=True).order_by("name"),
        required=False,
        label="Model endpoint",
        empty_label="The one the router chooses today",
    )
    system_prompt = forms.CharField(
        required=False,
        max_length=8000,
        label="System prompt",
        widget=forms.Textarea({"rows": 4}),
        help_text="Blank uses the product's default system prompt.",
    )
    scope = forms.ChoiceField(
        choices=[("turn", "This turn only"), ("conversation", "The whole conversation")],
        initial="turn",
        label="What to replay",
        widget=forms.RadioSelect,
    )
    kb = forms.ChoiceField(
        choices=[("now", "As it is now"), ("original", "As it was when the turn ran")],
        required=False,  # left out: as it is now
        initial="now",
        label="Knowledge base",
        widget=forms.RadioSelect,
    )


class AlertRuleForm(forms.ModelForm):
    webhook_url = forms.URLField(
        required=False,
        max_length=500,
        assume_scheme="https",
        label="Webhook URL (optional)",
        help_text="Each firing is POSTed there as JSON.",
    )

    class Meta:
        model = AlertRule
        fields = ["name", "metric", "threshold", "window_minutes", "min_turns", "webhook_url"]
        labels = {
            "window_minutes": "Window (minutes)",
            "min_turns": "Fewest turns to judge",
        }

    def clean_window_minutes(self) -> int:
        value: int = self.cleaned_data["window_minutes"]
        if not 5 <= value <= 7 * 24 * 60:
            raise forms.ValidationError("Choose a window from 5 minutes to 7 days (10080).")
        return value

    def clean_threshold(self) -> float:
        value: float = self.cleaned_data["threshold"]
        if value < 0:
            raise forms.ValidationError("The threshold cannot be negative.")
        metric = self.data.get("metric")
        rates = {AlertRule.Metric.ERROR_RATE, AlertRule.Metric.FLAGGED_SHARE}
        if metric in rates and value > 1:
            raise forms.ValidationError("Rates run from 0 to 1 (0.05 means 5%).")
        return value
