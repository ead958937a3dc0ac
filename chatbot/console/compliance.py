"""Admin console: personal data and residency. The PII patterns added to the recognizers (their
own page), and the regions collections and groups allow (forms on the Routing page, next to the
confidential collections)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.models import Group
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from chatbot.accounts import roles
from chatbot.accounts.access import permission_required
from chatbot.compliance import services
from chatbot.compliance.services import ComplianceError, regions_parse
from chatbot.models import Collection, PiiPattern


class PiiPatternForm(forms.Form):
    entity = forms.CharField(
        label="Type",
        max_length=40,
        help_text="What it is recorded as, in capitals: EMPLOYEE_ID. Same type again: replaced.",
    )
    regex = forms.CharField(
        label="Regular expression", max_length=500, help_text=r"For example EMP-\d{6}."
    )
    context = forms.CharField(
        label="Context words",
        required=False,
        max_length=400,
        help_text="Optional, comma separated: a match counts only with one of these words in "
        "the 60 characters before it.",
    )

    def context_words(self) -> list[str]:
        text = self.cleaned_data.get("context") or ""
        return [w.strip() for w in text.split(",") if w.strip()][:10]


@permission_required(roles.MANAGE_SETTINGS)
def pii_patterns(request: HttpRequest) -> HttpResponse:
    form = PiiPatternForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            saved = services.pattern_save(
                entity=form.cleaned_data["entity"],
                regex=form.cleaned_data["regex"],
                context=form.context_words(),
            )
        except ComplianceError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Saved the pattern {saved.entity}; the next turn uses it.")
            return redirect("console:pii_patterns")
    context = {"form": form, "patterns": PiiPattern.objects.all()}
    return render(request, "console/pii_patterns.html", context, status=400 if form.errors else 200)


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def pii_pattern_delete(request: HttpRequest, pk: int) -> HttpResponse:
    pattern = PiiPattern.objects.filter(pk=pk).first()
    if pattern is None:
        raise Http404("No such pattern.")
    services.pattern_delete(pattern=pattern)
    messages.success(request, f"Deleted the pattern {pattern.entity}.")
    return redirect("console:pii_patterns")


def _regions(request: HttpRequest) -> list[str] | None:
    try:
        return regions_parse(str(request.POST.get("regions", "")))
    except ComplianceError as exc:
        messages.error(request, str(exc))
        return None


def _said(regions: list[str]) -> str:
    return ", ".join(regions) if regions else "any region"


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def collection_regions(request: HttpRequest, pk: int) -> HttpResponse:
    collection = Collection.objects.filter(pk=pk).first()
    if collection is None:
        raise Http404("No such collection.")
    regions = _regions(request)
    if regions is not None:
        services.collection_set_regions(collection=collection, regions=regions)
        messages.success(request, f"“{collection.name}” passages may go to {_said(regions)}.")
    return redirect("console:routing")


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def group_regions(request: HttpRequest, pk: int) -> HttpResponse:
    group = Group.objects.filter(pk=pk).first()
    if group is None:
        raise Http404("No such group.")
    regions = _regions(request)
    if regions is not None:
        services.group_set_regions(group=group, regions=regions)
        messages.success(request, f"The group “{group.name}”'s data may go to {_said(regions)}.")
    return redirect("console:routing")
