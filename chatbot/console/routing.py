"""Admin console: the routing rules (an ordered list: add, edit, switch, move, delete), which
collections are confidential, and a dry run that shows what each rule would do with a question
asked by a chosen person, without calling any model."""

from __future__ import annotations

import json
import re
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.models import Group, User
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from chatbot.accounts import roles
from chatbot.accounts.access import permission_required
from chatbot.agent.routing import route_dry_run
from chatbot.console import services
from chatbot.console.tools import PrettyJSONField
from chatbot.llm.routing import question_parts, question_words
from chatbot.llm.routing_options import DEFAULT_OPTIONS, options_problems
from chatbot.models import Collection, ModelEndpoint, RoutingRule

QUESTION_LIMIT = 4000
KIND_HELP = {
    "sensitivity": "Models: those that may receive personal data or confidential passages "
    "(none listed: such questions are refused).",
    "task": "Models: the small ones classification, extraction and short answers go to, "
    "first allowed one wins.",
    "difficulty": "Models: the strong ones, first allowed one wins (none listed: the priciest "
    "allowed model).",
    "budget": "Models: the cheaper ones to switch to over the cap (none listed: refuse).",
    "availability": "Models: the fallbacks, in the order they are tried.",
}


class RoutingRuleForm(forms.ModelForm):
    models = forms.CharField(
        label="Models, in order",
        required=False,
        max_length=1000,
        help_text="Catalogue names separated by commas; what they mean depends on the kind.",
    )
    options = PrettyJSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false", "class": "code"}),
        help_text="This kind's settings as a JSON object; left out, a setting takes its default.",
    )

    class Meta:
        model = RoutingRule
        fields = ["name", "kind", "reason", "enabled"]
        labels = {"reason": "Reason shown in the trace", "enabled": "The router applies it"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.catalogue = dict(ModelEndpoint.objects.order_by("name").values_list("name", "pk"))
        rule = self.instance
        if rule.pk:
            names = {pk: name for name, pk in self.catalogue.items()}
            self.initial["models"] = ", ".join(names[i] for i in rule.endpoint_ids if i in names)
            self.initial["options"] = rule.options
        else:
            self.initial.setdefault("options", {})

    def clean_models(self) -> list[int]:
        names = [n for n in re.split(r"[\s,]+", self.cleaned_data.get("models") or "") if n]
        unknown = [n for n in names if n not in self.catalogue]
        if unknown:
            listed = ", ".join(self.catalogue) or "none yet"
            raise forms.ValidationError(
                f"No model named {', '.join(unknown)} in the catalogue. Models: {listed}."
            )
        return [self.catalogue[n] for n in dict.fromkeys(names)]

    def clean_options(self) -> dict[str, Any]:
        value = self.cleaned_data.get("options") or {}
        if not isinstance(value, dict):
            raise forms.ValidationError("Settings must be a JSON object, such as {}.")
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        if kind in DEFAULT_OPTIONS and "options" in data:
            data["options"] = {**DEFAULT_OPTIONS[kind], **data["options"]}
            # Unknown model names have their own error; don't also say "choose a model".
            count = len(data["models"]) if "models" in data else 1
            problems = options_problems(kind, data["options"], count)
            for problem in problems:
                field = "models" if problem.startswith("Choose") else "options"
                self.add_error(field, problem)
        return data

    def saved_fields(self) -> dict[str, Any]:
        data = self.cleaned_data
        fields = {name: data[name] for name in ("name", "kind", "reason", "enabled", "options")}
        return {**fields, "endpoint_ids": data["models"]}


class DryRunForm(forms.Form):
    user = forms.ModelChoiceField(
        queryset=User.objects.filter(is_active=True).order_by("username"),
        label="Ask as",
        help_text="Retrieval runs as this person; their groups' budgets apply.",
    )
    task = forms.ChoiceField(
        choices=[
            ("answer", "An answer"),
            ("extract", "An extraction (the extract tool)"),
            ("classify", "A classification"),
        ],
        initial="answer",
        required=False,
        label="Step",
    )
    question = forms.CharField(
        max_length=QUESTION_LIMIT,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Nothing is sent to any model and nothing is saved.",
    )


def _rule(pk: int) -> RoutingRule:
    try:
        return RoutingRule.objects.get(pk=pk)
    except RoutingRule.DoesNotExist:
        raise Http404("No such routing rule.") from None


@permission_required(roles.MANAGE_SETTINGS)
def routing_list(request: HttpRequest) -> HttpResponse:
    names = dict(ModelEndpoint.objects.values_list("pk", "name"))
    rules = list(RoutingRule.objects.order_by("order", "pk"))
    rows = [
        {
            "rule": rule,
            "models": [names[i] for i in rule.endpoint_ids if i in names],
            "settings": json.dumps(rule.options, ensure_ascii=False),
        }
        for rule in rules
    ]
    context = {
        "rows": rows,
        "collections": Collection.objects.order_by("name"),
        "groups": Group.objects.order_by("name").select_related("policy"),
    }
    return render(request, "console/routing.html", context)


@permission_required(roles.MANAGE_SETTINGS)
def routing_rule_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    rule = _rule(pk) if pk is not None else None
    form = RoutingRuleForm(request.POST or None, instance=rule)
    if request.method == "POST" and form.is_valid():
        saved = services.routing_rule_save(rule=rule, data=form.saved_fields())
        messages.success(request, f"Saved the routing rule “{saved.name}”; the next step uses it.")
        return redirect("console:routing")
    context = {
        "form": form,
        "rule": rule,
        "kind_help": KIND_HELP,
        "defaults": {k: json.dumps(v) for k, v in DEFAULT_OPTIONS.items()},
        "catalogue": list(form.catalogue),
    }
    status = 400 if request.method == "POST" else 200
    return render(request, "console/routing_rule_form.html", context, status=status)


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def routing_rule_toggle(request: HttpRequest, pk: int) -> HttpResponse:
    rule = _rule(pk)
    services.routing_rule_set_enabled(rule=rule, enabled=not rule.enabled)
    messages.success(request, f"“{rule.name}” is now {'on' if rule.enabled else 'off'}.")
    return redirect("console:routing")


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def routing_rule_move(request: HttpRequest, pk: int) -> HttpResponse:
    rule = _rule(pk)
    direction = request.POST.get("direction", "")
    if not services.routing_rule_move(rule=rule, direction=direction):
        messages.error(request, f"“{rule.name}” cannot move {direction or 'there'}.")
    return redirect("console:routing")


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def routing_rule_delete(request: HttpRequest, pk: int) -> HttpResponse:
    rule = _rule(pk)
    services.routing_rule_delete(rule=rule)
    messages.success(request, f"Deleted the routing rule “{rule.name}”.")
    return redirect("console:routing")


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def collection_confidential(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        collection = Collection.objects.get(pk=pk)
    except Collection.DoesNotExist:
        raise Http404("No such collection.") from None
    services.collection_set_confidential(
        collection=collection, confidential=not collection.confidential
    )
    state = "confidential" if collection.confidential else "no longer confidential"
    messages.success(request, f"“{collection.name}” is {state}.")
    return redirect("console:routing")


@permission_required(roles.MANAGE_SETTINGS)
def routing_dry_run(request: HttpRequest) -> HttpResponse:
    """A GET form, so a dry run can be shared as a link."""
    form = DryRunForm(request.GET if "question" in request.GET else None)
    context: dict[str, Any] = {"form": form}
    if form.is_bound and form.is_valid():
        question = form.cleaned_data["question"]
        context["run"] = route_dry_run(
            user=form.cleaned_data["user"],
            question=question,
            task=form.cleaned_data["task"] or "answer",
        )
        context["words"], context["parts"] = question_words(question), question_parts(question)
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "console/routing_dry_run.html", context, status=status)
