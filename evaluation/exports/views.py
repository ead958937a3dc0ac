"""Pages for the flywheel's outputs: training exports (reviewers) and the reward model (reviewers
read it; only admins train or activate a version, since the active one scores production answers)."""

from __future__ import annotations

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from django_htmx.middleware import HtmxDetails

from chatbot.accounts import roles
from chatbot.accounts.access import permission_required
from chatbot.jobs import jobs_notify, jobs_watch
from chatbot.models import Export, RewardModel
from chatbot.telemetry.audit import audit_record
from evaluation.exports import reward as reward_service
from evaluation.exports import selectors, services
from evaluation.exports.forms import ExportForm


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _export(pk: int) -> Export:
    try:
        return selectors.export_get(pk=pk)
    except Export.DoesNotExist:
        raise Http404("No such export.") from None


@permission_required(roles.REVIEW_ANSWERS)
def exports(request: HtmxHttpRequest) -> HttpResponse:
    page = selectors.exports_page(page=request.GET.get("page"))
    running = any(e.status in {Export.Status.QUEUED, Export.Status.RUNNING} for e in page)
    context = {"page": page, "running": running}
    template = "exports/_table.html" if request.htmx else "exports/index.html"
    return render(request, template, context)


@permission_required(roles.REVIEW_ANSWERS)
def export_new(request: HttpRequest) -> HttpResponse:
    form = ExportForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            with jobs_watch() as submitted:
                export = services.export_create(
                    kind=form.cleaned_data["kind"],
                    date_from=form.cleaned_data["date_from"],
                    date_to=form.cleaned_data["date_to"],
                    user=request.user,  # type: ignore[arg-type]
                )
        except services.InvalidExport as exc:
            form.add_error(None, str(exc))
        else:
            started = f"Export {export.pk} started; it is written in the background."
            jobs_notify(request, submitted, started)
            return redirect("review:export", export.pk)
    status = 400 if form.errors else 200
    return render(request, "exports/new.html", {"form": form}, status=status)


def _export_page(request: HttpRequest, current: Export, *, status: int = 200) -> HttpResponse:
    context = {
        "export": current,
        "readable": selectors.export_readable(export=current, user=request.user),
    }
    template = (
        "exports/_progress.html" if getattr(request, "htmx", False) else "exports/detail.html"
    )
    return render(request, template, context, status=status)


@permission_required(roles.REVIEW_ANSWERS)
def export(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    return _export_page(request, _export(pk))


# FileResponse streams (not an HttpResponse subclass); the decorator passes it through as it is.
@permission_required(roles.REVIEW_ANSWERS)  # type: ignore[arg-type]
def export_download(request: HttpRequest, pk: int) -> FileResponse | HttpResponse:
    current = _export(pk)
    if not selectors.export_readable(export=current, user=request.user):
        # Exports are listed to every reviewer; the passages in one are not.
        return _export_page(request, current, status=403)
    if current.status != Export.Status.DONE:
        raise Http404("This export has not finished; download it once it is done.")
    path = services.export_file(current)
    if path is None:
        raise Http404("The export's file is gone from the exports folder; run the export again.")
    audit_record("read.export", target=current, details={"file": path.name})
    # FileResponse streams the file in blocks: an export of any size never sits in memory.
    return FileResponse(
        path.open("rb"),
        as_attachment=True,
        filename=path.name,
        content_type="application/jsonl",
    )


def _reward_context(request: HttpRequest) -> dict[str, object]:
    state = reward_service.reward_training_state()
    return {
        # The active version scores every production answer: reviewers see it, admins change it.
        "can_manage": request.user.has_perm(roles.MANAGE_SETTINGS),
        "models": selectors.reward_models()[:50],
        "state": state,
        "training": bool(state and state.get("status") in {"queued", "running"}),
        "min_examples": reward_service.MIN_EXAMPLES,
        "min_per_class": reward_service.MIN_PER_CLASS,
    }


@permission_required(roles.REVIEW_ANSWERS)
def reward(request: HtmxHttpRequest) -> HttpResponse:
    template = "exports/_reward_body.html" if request.htmx else "exports/reward.html"
    return render(request, template, _reward_context(request))


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def reward_train(request: HttpRequest) -> HttpResponse:
    try:
        with jobs_watch() as submitted:
            reward_service.reward_train_queue(user=request.user)  # type: ignore[arg-type]
    except reward_service.NotEnoughExamples as exc:
        messages.error(request, str(exc))
        return render(request, "exports/reward.html", _reward_context(request), status=400)
    started = "Training started; the new version appears below when it is done."
    jobs_notify(request, submitted, started)
    return redirect("review:reward")


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def reward_activate(request: HttpRequest, pk: int) -> HttpResponse:
    model = RewardModel.objects.defer("artifact").filter(pk=pk).first()
    if model is None:
        raise Http404("No such reward model version.")
    reward_service.reward_activate(model=model)
    messages.success(request, f"Reward model v{model.version} now scores new answers.")
    return redirect("review:reward")
