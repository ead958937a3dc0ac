from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from chatbot.accounts import roles
from chatbot.accounts.access import permission_required
from chatbot.agent.grounding import assistant_settings
from chatbot.console import services
from chatbot.console.forms import AssistantSettingsForm, ModelEndpointForm
from chatbot.models import Experiment, ModelEndpoint
from chatbot.retrieval.answerable import answerable_model, trade_off_by_set
from chatbot.telemetry.audit import audit_changes, audit_record


def _endpoint(pk: int) -> ModelEndpoint:
    try:
        return ModelEndpoint.objects.get(pk=pk)
    except ModelEndpoint.DoesNotExist:
        raise Http404("No such model.") from None


@permission_required(roles.MANAGE_SETTINGS)
def models_list(request: HttpRequest) -> HttpResponse:
    endpoints = ModelEndpoint.objects.order_by("-is_default", "name")
    # What the last default-model (or prompt) changes reran: the change links its results.
    reruns = Experiment.objects.exclude(trigger="").select_related("dataset", "endpoint")[:10]
    return render(request, "console/models.html", {"endpoints": endpoints, "reruns": reruns})


@permission_required(roles.MANAGE_SETTINGS)
def model_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    endpoint = _endpoint(pk) if pk is not None else None
    form = ModelEndpointForm(request.POST or None, instance=endpoint)
    if request.method == "POST" and form.is_valid():
        saved = services.endpoint_save(
            endpoint=endpoint,
            data=form.cleaned_data,
            user=request.user,  # type: ignore[arg-type]
        )
        messages.success(request, f"Saved model “{saved.name}”.")
        return redirect("console:models")
    status = 400 if request.method == "POST" else 200
    return render(
        request, "console/model_form.html", {"form": form, "endpoint": endpoint}, status=status
    )


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def model_make_default(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = _endpoint(pk)
    try:
        services.endpoint_set_default(endpoint=endpoint, user=request.user)  # type: ignore[arg-type]
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"“{endpoint.name}” now answers by default.")
    return redirect("console:models")


@permission_required(roles.MANAGE_SETTINGS)
def assistant(request: HttpRequest) -> HttpResponse:
    """How answers are grounded in the knowledge base; one set of settings for the product."""
    classifier = answerable_model()
    form = AssistantSettingsForm(request.POST or None, instance=assistant_settings())
    if classifier is None:
        del form.fields["min_answerable"]  # no classifier shipped: the threshold would do nothing
    if request.method == "POST" and form.is_valid():
        before = {f: form.initial.get(f) for f in form.changed_data}
        with transaction.atomic():
            form.save()
            after = {f: form.cleaned_data[f] for f in form.changed_data}
            audit_record(
                "settings.update",
                target=form.instance,
                details={"changed": audit_changes(before, after)},
            )
        messages.success(request, "Saved the assistant settings; the next answer uses them.")
        return redirect("console:assistant")
    status = 400 if form.errors else 200
    context: dict[str, Any] = {"form": form, "classifier": classifier}
    if classifier is not None:
        groups, rows = trade_off_by_set(classifier)
        context |= {
            "trade_off_groups": groups,
            "trade_off": rows,
            "tuned_threshold": classifier.about.get("threshold"),
            "trained_on": classifier.about.get("trained_on") or {},
            "saved_threshold": form.instance.min_answerable,
        }
    return render(request, "console/assistant.html", context, status=status)
