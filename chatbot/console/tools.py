"""Admin console: the agent's tools. Each tool is registered in code; here admins switch it on or
off and choose who may use it, how long a call may take and its own settings (the SQL tool's
tables, the draft templates). The classify tool's trained versions are listed with their held-out
accuracy against the majority baseline."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from chatbot.accounts import roles
from chatbot.accounts.access import permission_required
from chatbot.agent.tools import TOOLS
from chatbot.agent.tools.access import tools_ensure
from chatbot.agent.tools.classifier_selectors import classifier_versions
from chatbot.console import services
from chatbot.models import ToolSetting

ROLE_CHOICES = [(name, name.capitalize()) for name in roles.ROLE_PERMISSIONS]
TIMEOUT_RANGE = (0.5, 120.0)


class PrettyJSONField(forms.JSONField):
    """Shown indented: an admin edits nested settings (templates, endpoints) by hand."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        if value is None:
            return ""  # nothing set: an empty box, not the word "null"
        return json.dumps(value, ensure_ascii=False, indent=2)


class ToolSettingForm(forms.Form):
    enabled = forms.BooleanField(required=False, label="The agent may call this tool")
    roles = forms.MultipleChoiceField(
        choices=ROLE_CHOICES,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Roles that may use it",
        help_text="The agent calls it only for people in one of these roles.",
    )
    timeout_s = forms.FloatField(
        min_value=TIMEOUT_RANGE[0],
        max_value=TIMEOUT_RANGE[1],
        label="Timeout (seconds)",
        help_text="A call that takes longer is stopped and the person is told.",
    )
    options = PrettyJSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false", "class": "code"}),
        help_text="This tool's own settings as a JSON object.",
    )

    def __init__(self, *args: Any, tool_name: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tool = TOOLS[tool_name]

    def clean_options(self) -> dict[str, Any]:
        value = self.cleaned_data.get("options") or {}
        if not isinstance(value, dict):
            raise forms.ValidationError("Options must be a JSON object, such as {}.")
        problems = self.tool.options_errors(value)
        if problems:
            raise forms.ValidationError(problems)
        return value


def _setting(name: str) -> ToolSetting:
    if name not in TOOLS:
        raise Http404("No such tool.")
    tools_ensure()
    return ToolSetting.objects.get(name=name)


@permission_required(roles.MANAGE_SETTINGS)
def tools_list(request: HttpRequest) -> HttpResponse:
    settings_by_name = {s.name: s for s in tools_ensure()}
    rows = [
        {"tool": tool, "setting": settings_by_name[name]}
        for name, tool in TOOLS.items()
        if name in settings_by_name
    ]
    context = {"rows": rows, "classifiers": classifier_versions()}
    return render(request, "console/tools.html", context)


@permission_required(roles.MANAGE_SETTINGS)
def tool_edit(request: HttpRequest, name: str) -> HttpResponse:
    setting = _setting(name)
    initial = {
        "enabled": setting.enabled,
        "roles": setting.roles,
        "timeout_s": setting.timeout_s,
        "options": setting.options,
    }
    form = ToolSettingForm(request.POST or None, initial=initial, tool_name=name)
    if request.method == "POST" and form.is_valid():
        services.tool_setting_save(setting=setting, data=form.cleaned_data)
        state = "on" if setting.enabled else "off"
        messages.success(request, f"Saved the {setting.name} tool; it is {state}.")
        return redirect("console:tools")
    status = 400 if request.method == "POST" else 200
    tool = TOOLS[name]
    context = {
        "form": form,
        "setting": setting,
        "tool": tool,
        "schema": json.dumps(tool.schema, indent=2),
        "defaults": json.dumps(tool.default_options, indent=2, ensure_ascii=False),
    }
    return render(request, "console/tool_form.html", context, status=status)


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def tool_toggle(request: HttpRequest, name: str) -> HttpResponse:
    setting = _setting(name)
    services.tool_setting_save(setting=setting, data={"enabled": not setting.enabled})
    state = "may now call" if setting.enabled else "no longer calls"
    messages.success(request, f"The agent {state} {setting.name}.")
    return redirect("console:tools")
