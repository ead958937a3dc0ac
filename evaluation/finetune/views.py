"""Fine-tuning pages (admins): the jobs, a form to start one, a job's page (progress bar, log,
loss chart, cancel, lineage) with the gated promotion of the model it made."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from chatbot.accounts import roles
from chatbot.accounts.access import permission_required
from chatbot.jobs import jobs_notify, jobs_watch
from chatbot.models import FineTuneJob, Promotion
from evaluation.finetune import promotion as gates
from evaluation.finetune import selectors, services
from evaluation.finetune.chart import loss_chart
from evaluation.finetune.forms import FineTuneForm, PromotionForm


def _job(pk: int) -> FineTuneJob:
    try:
        return selectors.job_get(pk=pk)
    except FineTuneJob.DoesNotExist:
        raise Http404("No such fine-tuning job.") from None


@permission_required(roles.MANAGE_SETTINGS)
def jobs(request: HttpRequest) -> HttpResponse:
    page = selectors.jobs_page(page=request.GET.get("page"))
    running = any(not j.finished for j in page)
    context = {"page": page, "running": running}
    template = (
        "finetune/_table.html" if request.headers.get("HX-Request") else "finetune/index.html"
    )
    return render(request, template, context)


@permission_required(roles.MANAGE_SETTINGS)
def job_new(request: HttpRequest) -> HttpResponse:
    initial = {"export": request.GET.get("export")} if request.GET.get("export") else None
    form = FineTuneForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            with jobs_watch() as submitted:
                job, created = services.finetune_create(
                    export=data["export"], method=data["method"], backend=data["backend"],
                    base_model=data["base_model"], hosted_via=data["hosted_via"],
                    hyperparameters=form.hyperparameters(), user=request.user,  # type: ignore[arg-type]
                )  # fmt: skip
        except services.InvalidJob as exc:
            form.add_error(None, str(exc))
        else:
            if created:
                jobs_notify(request, submitted, f"Fine-tuning job {job.pk} started.")
            else:
                messages.info(
                    request, f"Job {job.pk} already trains this export with these settings."
                )
            return redirect("review:finetune_job", job.pk)
    status = 400 if form.errors else 200
    return render(request, "finetune/new.html", {"form": form}, status=status)


def _promotion_context(job: FineTuneJob) -> dict[str, Any]:
    promotion = selectors.promotion_latest(job=job)
    if promotion is not None:
        promotion = gates.promotion_refresh(promotion)
    return {
        "promotion": promotion,
        "online": gates.online_state(promotion) if promotion is not None else None,
        "promotion_form": PromotionForm(),
    }


@permission_required(roles.MANAGE_SETTINGS)
def job(request: HttpRequest, pk: int) -> HttpResponse:
    current = _job(pk)
    context: dict[str, Any] = {"job": current, "chart": loss_chart(current.losses)}
    if request.headers.get("HX-Request") and request.GET.get("part") == "promotion":
        return render(
            request, "finetune/_promotion.html", {"job": current, **_promotion_context(current)}
        )
    if request.headers.get("HX-Request"):
        return render(request, "finetune/_progress.html", context)
    return render(request, "finetune/job.html", {**context, **_promotion_context(current)})


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def job_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    current = _job(pk)
    if services.finetune_cancel(job=current, user=request.user):  # type: ignore[arg-type]
        messages.success(request, f"Job {current.pk} will stop at its next training step.")
    else:
        messages.info(request, f"Job {current.pk} had already finished.")
    return redirect("review:finetune_job", current.pk)


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def promotion_start(request: HttpRequest, pk: int) -> HttpResponse:
    current = _job(pk)
    form = PromotionForm(request.POST)
    if current.endpoint is None:
        messages.error(request, "This job registered no model: there is nothing to promote.")
    elif not form.is_valid():
        messages.error(request, "Choose the dataset the offline experiment runs on.")
    else:
        try:
            with jobs_watch() as submitted:
                gates.promotion_start(
                    endpoint=current.endpoint,
                    dataset=form.cleaned_data["dataset"],
                    user=request.user,  # type: ignore[arg-type]
                )
        except gates.PromotionError as exc:
            messages.error(request, str(exc))
        else:
            jobs_notify(
                request,
                submitted,
                "The offline experiment started: both models answer the dataset.",
            )
    return redirect("review:finetune_job", current.pk)


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def promotion_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    promotion = (
        Promotion.objects.select_related("endpoint", "baseline", "abtest").filter(pk=pk).first()
    )
    if promotion is None:
        raise Http404("No such promotion.")
    job = FineTuneJob.objects.filter(endpoint=promotion.endpoint).first()
    user = request.user
    try:
        if action == "abtest":
            gates.promotion_abtest_start(promotion=promotion, user=user)  # type: ignore[arg-type]
            messages.success(
                request, "The A/B test is running: people are assigned from their next turn."
            )
        elif action == "promote":
            early = request.POST.get("early") == "1"
            gates.promotion_promote(promotion=promotion, user=user, early_acknowledged=early)  # type: ignore[arg-type]
            messages.success(request, f"“{promotion.endpoint.name}” is now the default model.")
        elif action == "rollback":
            gates.promotion_rollback(promotion=promotion, user=user)  # type: ignore[arg-type]
            messages.success(request, f"Rolled back: “{promotion.baseline}” is the default again.")
        else:
            raise Http404("No such action.")
    except gates.PromotionError as exc:
        messages.error(request, str(exc))
    if job is None:
        return redirect("review:finetune_jobs")
    return redirect("review:finetune_job", job.pk)
