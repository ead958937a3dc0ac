"""Pages for synthetic questions (reviewers and admins): asking for a run, its progress, the queue
of generated questions, and the page where a reviewer accepts or rejects one."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ObjectDoesNotExist
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from django_htmx.middleware import HtmxDetails

from chatbot.accounts import roles
from chatbot.accounts.access import permission_required, signed_in_user
from chatbot.jobs import jobs_notify, jobs_watch
from chatbot.models import Dataset, SyntheticCandidate, SyntheticRun
from evaluation.synthetic import selectors, services
from evaluation.synthetic.forms import DecisionForm, GenerateForm
from evaluation.synthetic.generate import PROMPT_VERSION

REVIEW = roles.REVIEW_ANSWERS
PAGE_SIZE = 25


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _run(request: HttpRequest, pk: int) -> SyntheticRun:
    try:
        return selectors.run_get_for(request.user, pk)
    except ObjectDoesNotExist:
        raise Http404("No such run.") from None


def _candidate(request: HttpRequest, pk: int) -> SyntheticCandidate:
    try:
        return selectors.candidate_get_for(request.user, pk)
    except ObjectDoesNotExist:
        raise Http404("No such question.") from None


@permission_required(REVIEW)
def generate_new(request: HttpRequest) -> HttpResponse:
    user = signed_in_user(request)
    form = GenerateForm(request.POST or None, user=user)
    preset = request.GET.get("dataset", "")
    if request.method == "GET" and preset.isdigit():
        form.initial["dataset"] = Dataset.objects.filter(pk=int(preset)).first()
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            with jobs_watch() as submitted:
                run = services.synthetic_run_create(
                    dataset=data["dataset"],
                    collection=data["collection"],
                    endpoint=data["endpoint"],
                    kinds=list(data["kinds"]),
                    variants_per_chunk=data["variants_per_chunk"],
                    negatives_per_chunk=data["negatives_per_chunk"],
                    sample_size=data["sample_size"],
                    user=user,
                )
        except services.InvalidSynthetic as exc:
            form.add_error(None, str(exc))
        else:
            jobs_notify(
                request,
                submitted,
                f"Generating questions from {run.chunks_total} chunks of “{run.collection.name}”.",
            )
            return redirect("review:synthetic_run", run.pk)
    context = {"tab": "synthetic", "form": form, "prompt_version": PROMPT_VERSION}
    return render(request, "synthetic/new.html", context, status=400 if form.errors else 200)


@permission_required(REVIEW)
def run_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    run = _run(request, pk)
    if request.htmx:
        response = render(request, "synthetic/_run_progress.html", {"run": run})
        if run.finished:
            # The counts below the bar belong to the full page: load it once the run ends.
            response["HX-Refresh"] = "true"
        return response
    context = {"tab": "synthetic", "run": run, "counts": selectors.run_counts(run)}
    return render(request, "synthetic/run.html", context)


@require_POST
@permission_required(REVIEW)
def run_resume(request: HttpRequest, pk: int) -> HttpResponse:
    run = _run(request, pk)
    try:
        with jobs_watch() as submitted:
            services.synthetic_run_resume(run=run, user=signed_in_user(request))
    except services.InvalidSynthetic as exc:
        messages.error(request, str(exc))
    else:
        jobs_notify(request, submitted, "Resumed; it carries on from the next chunk.")
    return redirect("review:synthetic_run", run.pk)


@permission_required(REVIEW)
def queue(request: HttpRequest) -> HttpResponse:
    filters = selectors.CandidateFilters.from_query(request.GET)
    page = Paginator(selectors.candidates_for(request.user, filters), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    context = {
        "tab": "synthetic",
        "page": page,
        "filters": filters,
        "query": urlencode(filters.query()),
        "statuses": [
            ("pending", "Waiting for review"),
            ("accepted", "Accepted"),
            ("rejected", "Rejected"),
            ("all", "All"),
        ],
        "kinds": SyntheticCandidate.Kind.choices,
        "counts": selectors.candidate_counts_for(request.user),
        "runs": selectors.runs_for(request.user)[:10],
    }
    template = (
        "synthetic/_queue_table.html"
        if request.headers.get("HX-Request")
        else "synthetic/queue.html"
    )
    return render(request, template, context)


@require_POST
@permission_required(REVIEW)
def take_next(request: HttpRequest) -> HttpResponse:
    found = selectors.candidate_next_for(request.user)
    if found is None:
        messages.info(
            request, "No generated questions wait for review. Generate some from a dataset."
        )
        return redirect("review:synthetic_queue")
    return redirect("review:synthetic_candidate", found)


def _candidate_page(
    request: HttpRequest,
    candidate: SyntheticCandidate,
    form: DecisionForm | None = None,
    status: int = 200,
) -> HttpResponse:
    if form is None:
        form = DecisionForm(
            initial={"question": candidate.question, "expected_answer": candidate.expected_answer}
        )
    context = {
        "tab": "synthetic",
        "candidate": candidate,
        "form": form,
        "pending": candidate.status == SyntheticCandidate.Status.PENDING,
        "negative": candidate.kind == SyntheticCandidate.Kind.NEGATIVE,
    }
    return render(request, "synthetic/candidate.html", context, status=status)


@permission_required(REVIEW)
def candidate_detail(request: HttpRequest, pk: int) -> HttpResponse:
    candidate = _candidate(request, pk)
    if request.method != "POST":
        return _candidate_page(request, candidate)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        return _candidate_page(request, candidate, form, status=400)
    reviewer = signed_in_user(request)
    data = form.cleaned_data
    try:
        if data["action"] == "accept":
            item = services.candidate_accept(
                candidate=candidate,
                reviewer=reviewer,
                question=data["question"],
                expected_answer=data["expected_answer"],
            )
            messages.success(
                request,
                f"Added to “{candidate.dataset.name}” as item {item.pk} (version {item.added_in}).",
            )
        else:
            services.candidate_reject(candidate=candidate, reviewer=reviewer, reason=data["reason"])
            messages.info(request, "Rejected; it stays out of the dataset.")
    except services.InvalidSynthetic as exc:
        form.add_error(None, str(exc))
        return _candidate_page(request, candidate, form, status=400)
    found = selectors.candidate_next_for(request.user, after=candidate)
    if found is None:
        messages.info(request, "That was the last generated question waiting for review.")
        return redirect("review:synthetic_queue")
    return redirect("review:synthetic_candidate", found)
