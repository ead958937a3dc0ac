"""The extraction page: an agent picks one of the admin's schemas, pastes texts or uploads a
file, watches the batch run in the background and downloads the results as CSV.

Open to anyone with the chat permission whose role may use the `extract` tool; someone else's
run is a 404, never a 403, so ids reveal nothing.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.text import slugify
from django.views.decorators.http import require_GET
from django_htmx.middleware import HtmxDetails

from chatbot.accounts import roles
from chatbot.accounts.access import permission_required, signed_in_user
from chatbot.chat import extraction
from chatbot.chat.extraction_input import MAX_TEXTS, ExtractForm
from chatbot.jobs import jobs_notify, jobs_watch
from chatbot.models import ExtractionRun

RECENT_RUNS = 10


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _run_or_404(request: HttpRequest, run_id: int) -> ExtractionRun:
    try:
        return extraction.extraction_run_get_for(signed_in_user(request), run_id)
    except ExtractionRun.DoesNotExist:
        raise Http404("No such extraction run.") from None


@permission_required(roles.USE_CHAT)
def extract_index(request: HttpRequest) -> HttpResponse:
    user = signed_in_user(request)
    schemas = extraction.extraction_schemas_for(user)
    recent = list(extraction.extraction_runs_for(user)[:RECENT_RUNS])
    if schemas is None:
        status = 403 if request.method == "POST" else 200
        refused = {"not_allowed": extraction.NOT_ALLOWED, "runs": recent}
        return render(request, "chat/extract.html", refused, status=status)
    form = ExtractForm(request.POST or None, request.FILES or None, schemas=schemas)
    if request.method == "POST" and form.is_valid():
        name = form.cleaned_data["schema"]
        with jobs_watch() as submitted:
            run, created = extraction.extraction_run_submit(
                owner=user,
                schema_name=name,
                entry=schemas[name],
                texts=form.cleaned_data["batch"],
                source_name=form.cleaned_data["source_name"],
            )
        if created:
            jobs_notify(request, submitted, f"Extracting {run.total} texts with “{name}”.")
        else:
            messages.info(request, "You sent these texts a moment ago: here is that run.")
        return redirect("chat:extract_run", run_id=run.pk)
    context: dict[str, Any] = {
        "form": form,
        "runs": recent,
        "has_schemas": bool(schemas),
        "max_texts": MAX_TEXTS,
    }
    status = 400 if form.errors else 200
    return render(request, "chat/extract.html", context, status=status)


@permission_required(roles.USE_CHAT)
@require_GET
def extract_run(request: HtmxHttpRequest, run_id: int) -> HttpResponse:
    """The run's page; htmx polls it for the progress and results partial while it runs."""
    run = _run_or_404(request, run_id)
    context = {
        "run": run,
        "columns": extraction.columns_of(run.schema),
        "rows": extraction.extraction_rows(run),
    }
    template = "chat/_extract_progress.html" if request.htmx else "chat/extract_run.html"
    return render(request, template, context)


@permission_required(roles.USE_CHAT)
@require_GET
def extract_csv(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run_or_404(request, run_id)
    response = HttpResponse(extraction.extraction_csv(run), content_type="text/csv; charset=utf-8")
    name = f"extraction-{run.pk}-{slugify(run.schema_name) or 'results'}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
