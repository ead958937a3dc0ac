"""Pages for datasets and experiments (reviewers and admins)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.core.exceptions import ObjectDoesNotExist
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from django_htmx.middleware import HtmxDetails

from chatbot.accounts import roles
from chatbot.accounts.access import permission_required
from chatbot.jobs import jobs_notify, jobs_watch
from chatbot.models import Dataset, DatasetItem, Escalation, Experiment, Review
from evaluation.datasets import compare as comparing
from evaluation.datasets import regression, selectors, services
from evaluation.datasets.forms import (
    CompareForm,
    DatasetForm,
    ExperimentForm,
    FromReviewForm,
    ImportForm,
)
from evaluation.datasets.runner import METRICS
from evaluation.offline.data import BadJsonlFile

PAGE_SIZE = 50
REVIEW = roles.REVIEW_ANSWERS


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _page(
    request: HttpRequest, rows: QuerySet[Any] | list[Any], size: int = PAGE_SIZE
) -> Page[Any]:
    return Paginator(rows, size).get_page(request.GET.get("page"))


def _dataset(pk: int) -> Dataset:
    try:
        return selectors.dataset_get(pk)
    except ObjectDoesNotExist:
        raise Http404("No such dataset.") from None


def _experiment(pk: int) -> Experiment:
    try:
        return selectors.experiment_get(pk)
    except ObjectDoesNotExist:
        raise Http404("No such experiment.") from None


# --- datasets ------------------------------------------------------------------------------------


@permission_required(REVIEW)
def datasets(request: HttpRequest) -> HttpResponse:
    form = DatasetForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            created = services.dataset_create(
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                user=request.user,  # type: ignore[arg-type]
            )
        except services.InvalidDataset as exc:
            form.add_error("name", str(exc))
        else:
            messages.success(request, f"Created the dataset “{created.name}”.")
            return redirect("review:dataset", created.pk)
    context = {
        "tab": "datasets",
        "page": _page(request, selectors.datasets_with_counts()),
        "form": form,
        "import_form": ImportForm(),
    }
    return render(request, "datasets/index.html", context, status=400 if form.errors else 200)


def _version(request: HttpRequest, dataset: Dataset) -> int:
    raw = request.GET.get("version") or str(dataset.version)
    if not raw.isdigit() or not 1 <= int(raw) <= dataset.version:
        raise BadVersion(f"Choose a version from 1 to {dataset.version}.")
    return int(raw)


class BadVersion(ValueError):
    pass


@permission_required(REVIEW)
def dataset(request: HttpRequest, pk: int) -> HttpResponse:
    current = _dataset(pk)
    try:
        version = _version(request, current)
    except BadVersion as exc:
        messages.error(request, str(exc))
        version, status = current.version, 400
    else:
        status = 200
    context = {
        "tab": "datasets",
        "dataset": current,
        "version": version,
        "versions": range(current.version, 0, -1),
        "query": f"version={version}",
        "page": _page(request, selectors.dataset_items(current, version=version)),
        "import_form": ImportForm(dataset=current),
        "experiments": selectors.experiments_list(dataset=current)[:10],
    }
    return render(request, "datasets/dataset.html", context, status=status)


@permission_required(REVIEW)
def dataset_import(request: HttpRequest) -> HttpResponse:
    """GET: the import form for a new dataset. POST: import, into `dataset` (an id) when given."""
    target: Dataset | None = None
    raw_target = request.POST.get("dataset") or request.GET.get("dataset")
    if raw_target:
        if not raw_target.isdigit():
            raise Http404("No such dataset.")
        target = _dataset(int(raw_target))
    form = ImportForm(request.POST or None, request.FILES or None, dataset=target)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        name = target.name if target is not None else form.cleaned_data["name"]
        try:
            imported = services.dataset_import_jsonl(
                name=name,
                file=upload,
                user=request.user,  # type: ignore[arg-type]
            )
        except (BadJsonlFile, services.InvalidDataset) as exc:
            form.add_error("file", str(exc))
        else:
            verb = "Created" if imported.created else "Updated"
            messages.success(
                request,
                f"{verb} “{imported.dataset.name}”: {imported.added} items imported "
                f"as version {imported.dataset.version}.",
            )
            return redirect("review:dataset", imported.dataset.pk)
    context = {"tab": "datasets", "form": form, "dataset": target}
    return render(request, "datasets/import.html", context, status=400 if form.errors else 200)


@require_POST
@permission_required(REVIEW)
def dataset_item_remove(request: HttpRequest, item_id: int) -> HttpResponse:
    item = DatasetItem.objects.select_related("dataset").filter(pk=item_id).first()
    if item is None:
        raise Http404("No such dataset item.")
    try:
        removed = services.dataset_item_remove(item=item)
    except services.InvalidDataset as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            f"Removed the item from version {removed.removed_in} on; earlier versions keep it.",
        )
    return redirect("review:dataset", item.dataset_id)


@require_POST
@permission_required(REVIEW)
def dataset_add_review(request: HttpRequest, review_id: int) -> HttpResponse:
    """The one click on a review: its turn becomes an item of the chosen (or a new) dataset."""
    review = Review.objects.select_related("turn", "reviewer").filter(pk=review_id).first()
    if review is None:
        raise Http404("No such review.")
    return _add_one_click(
        request,
        lambda target: services.dataset_item_from_review(review=review, dataset=target),
        noun="turn",
        context={"tab": "datasets", "review": review},
    )


@require_POST
@permission_required(REVIEW)
def dataset_add_escalation(request: HttpRequest, escalation_id: int) -> HttpResponse:
    """The one click on an answered escalation: the human's reply becomes an item."""
    escalation = (
        Escalation.objects.select_related("turn", "answered_by").filter(pk=escalation_id).first()
    )
    if escalation is None:
        raise Http404("No such escalation.")
    return _add_one_click(
        request,
        lambda target: services.dataset_item_from_escalation(escalation=escalation, dataset=target),
        noun="reply",
        context={"tab": "escalations", "escalation": escalation},
    )


def _add_one_click(
    request: HttpRequest,
    add: Callable[[Dataset], DatasetItem],
    *,
    noun: str,
    context: dict[str, Any],
) -> HttpResponse:
    """The chosen (or a new) dataset gets the item `add` makes; back to the page the form was on,
    or the form again with the reason it could not be added."""
    form = FromReviewForm(request.POST)
    if form.is_valid():
        try:
            target = form.cleaned_data["dataset"] or _dataset_named(
                request, form.cleaned_data["new_dataset"]
            )
            item = add(target)
        except services.InvalidDataset as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(
                request,
                f"The {noun} is item {item.pk} of “{target.name}” (version {target.version}).",
            )
            back = form.cleaned_data.get("next") or ""
            if url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
                return redirect(back)
            return redirect("review:dataset", target.pk)
    return render(request, "datasets/from_review.html", {**context, "form": form}, status=400)


def _dataset_named(request: HttpRequest, name: str) -> Dataset:
    existing = Dataset.objects.filter(name=" ".join(name.split())).first()
    if existing is not None:
        return existing
    return services.dataset_create(name=name, user=request.user)  # type: ignore[arg-type]


# --- experiments ---------------------------------------------------------------------------------


@permission_required(REVIEW)
def experiments(request: HttpRequest) -> HttpResponse:
    context = {
        "tab": "experiments",
        "page": _page(request, selectors.experiments_list()),
        "compare_form": CompareForm(),
    }
    return render(request, "datasets/experiments.html", context)


@permission_required(REVIEW)
def experiment_new(request: HttpRequest) -> HttpResponse:
    initial_dataset = request.GET.get("dataset")
    form = ExperimentForm(request.POST or None, user=request.user)
    if request.method == "GET" and initial_dataset and initial_dataset.isdigit():
        form.initial["dataset"] = int(initial_dataset)
    elif request.method == "GET":
        # The dataset most recently changed is the one a reviewer most likely means.
        latest = Dataset.objects.order_by("-updated_at").values_list("pk", flat=True).first()
        if latest is not None:
            form.initial["dataset"] = latest
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            with jobs_watch() as submitted:
                created = services.experiment_create(
                    dataset=data["dataset"],
                    endpoint=data["endpoint"],
                    prompt_template=data["prompt_template"],
                    retrieval=form.retrieval(),
                    name=data["name"],
                    user=request.user,  # type: ignore[arg-type]
                    kb_as_of_turn=data["kb_as_of_turn"],
                )
        except services.InvalidExperiment as exc:
            form.add_error(None, str(exc))
        else:
            jobs_notify(request, submitted, f"Started “{created.name}”.")
            return redirect("review:experiment", created.pk)
    context = {"tab": "experiments", "form": form}
    return render(
        request, "datasets/experiment_new.html", context, status=400 if form.errors else 200
    )


def _labels(experiment: Experiment) -> tuple[list[str], list[str]]:
    summary = experiment.summary or {}
    judges = sorted((summary.get("judges") or {}).keys())
    found = summary.get("metrics") or {}
    return judges, [m for m in METRICS if m in found]


@permission_required(REVIEW)
def experiment(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    current = _experiment(pk)
    running = current.status in {Experiment.Status.QUEUED, Experiment.Status.RUNNING}
    if request.htmx:
        response = render(request, "datasets/_experiment_progress.html", {"experiment": current})
        if not running:
            # The results table is part of the full page: load it once the run ends.
            response["HX-Refresh"] = "true"
        return response
    judges, metric_labels = _labels(current)
    page = None if running else _page(request, selectors.experiment_results(current))
    rows = [
        {
            "result": r,
            "judges": [r.scores.get(label) for label in judges],
            "metrics": [r.scores.get(label) for label in metric_labels],
        }
        for r in (page.object_list if page is not None else [])
    ]
    context = {
        "tab": "experiments",
        "experiment": current,
        "judges": judges,
        "metric_labels": metric_labels,
        "page": page,
        "rows": rows,
        "summary_judges": (current.summary or {}).get("judges", {}),
        "summary_metrics": (current.summary or {}).get("metrics", {}),
    }
    return render(request, "datasets/experiment.html", context)


@permission_required(REVIEW)
def experiment_compare(request: HttpRequest) -> HttpResponse:
    # A link may preselect one side ("Compare with…"): errors only once both are chosen.
    chosen = "a" in request.GET and "b" in request.GET
    form = CompareForm(request.GET if chosen else None, initial=request.GET.dict())
    context: dict[str, object] = {"tab": "compare", "form": form}
    if chosen and form.is_valid():
        a, b = form.cleaned_data["a"], form.cleaned_data["b"]
        tolerance = form.cleaned_data.get("tolerance")
        result = comparing.compare(
            list(selectors.experiment_results(a)),
            list(selectors.experiment_results(b)),
            tolerance=comparing.DEFAULT_TOLERANCE if tolerance is None else tolerance,
        )
        query = request.GET.copy()
        query.pop("page", None)
        context.update(
            a=a,
            b=b,
            comparison=result,
            page=_page(request, result.changed),
            query=query.urlencode(),
        )
    status = 400 if chosen and form.errors else 200
    return render(request, "datasets/compare.html", context, status=status)


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def dataset_regression(request: HttpRequest, pk: int) -> HttpResponse:
    """Admins only: a regression dataset reruns (model calls, cost) on every default-model or
    published-prompt change."""
    current = _dataset(pk)
    regression.dataset_set_regression(dataset=current, regression=not current.regression)
    if current.regression:
        messages.success(
            request,
            f"“{current.name}” is a regression dataset: it reruns whenever the default model or "
            "the published prompt changes.",
        )
    else:
        messages.success(request, f"“{current.name}” is no longer a regression dataset.")
    return redirect("review:dataset", current.pk)
