"""Admin console: the rules that put answers in the review queue (list, add, edit, switch)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from chatbot.accounts import roles
from chatbot.accounts.access import permission_required
from chatbot.models import FlagRule
from evaluation.review import selectors, services


class FlagRuleForm(forms.ModelForm):
    priority = forms.IntegerField(
        min_value=0, max_value=100, help_text="0-100; the queue shows higher priorities first."
    )
    sample_rate = forms.FloatField(
        label="Sample rate",
        min_value=0.0,
        max_value=1.0,
        required=False,
        help_text="Random sample only: the share of answers picked, e.g. 0.02 for 2%.",
    )

    class Meta:
        model = FlagRule
        fields = list(services.RULE_FIELDS)
        labels = {
            "judge_name": "Judge (blank = any judge)",
            "double_review": "Two reviewers grade each item (for agreement)",
        }
        help_texts = {"judge_name": "“Judge under threshold” only: the judge's name."}

    def clean_sample_rate(self) -> float:
        return float(self.cleaned_data.get("sample_rate") or 0)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.errors:
            try:
                services.flag_rule_validate(data)
            except services.InvalidRule as exc:
                self.add_error(None, str(exc))
        return data


def _rule(pk: int) -> FlagRule:
    try:
        return FlagRule.objects.get(pk=pk)
    except FlagRule.DoesNotExist:
        raise Http404("No such rule.") from None


@permission_required(roles.MANAGE_SETTINGS)
def rules_list(request: HttpRequest) -> HttpResponse:
    return render(request, "console/rules.html", {"rules": selectors.rules_all()})


@permission_required(roles.MANAGE_SETTINGS)
def rule_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    rule = _rule(pk) if pk is not None else None
    form = FlagRuleForm(request.POST or None, instance=rule)
    if request.method == "POST" and form.is_valid():
        data = {name: form.cleaned_data[name] for name in services.RULE_FIELDS}
        try:
            saved = services.flag_rule_save(rule=rule, data=data)
        except services.InvalidRule as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Saved the rule “{saved.name}”; it applies to new flags.")
            return redirect("console:rules")
    status = 400 if request.method == "POST" else 200
    return render(request, "console/rule_form.html", {"form": form, "rule": rule}, status=status)


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def rule_toggle(request: HttpRequest, pk: int) -> HttpResponse:
    rule = _rule(pk)
    services.flag_rule_set_enabled(rule=rule, enabled=not rule.enabled)
    state = "on" if rule.enabled else "off"
    messages.success(request, f"“{rule.name}” is now {state}.")
    return redirect("console:rules")
