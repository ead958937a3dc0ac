from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ObjectDoesNotExist
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from django_htmx.middleware import HtmxDetails

from chatbot.accounts import roles
from chatbot.accounts.access import no_access, permission_required
from chatbot.jobs import jobs_notify, jobs_watch
from chatbot.knowledge import selectors, services
from chatbot.knowledge.forms import CollectionForm, UploadForm
from chatbot.knowledge.uploads import upload_store


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _can_manage(request: HttpRequest) -> bool:
    return request.user.has_perm(roles.MANAGE_KNOWLEDGE)


@permission_required(roles.VIEW_KNOWLEDGE)
def index(request: HttpRequest) -> HttpResponse:
    form = CollectionForm(request.POST or None)
    if request.method == "POST":
        if not _can_manage(request):
            return no_access(request)
        if form.is_valid():
            collection = services.collection_create(
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                groups=form.cleaned_data["groups"],
            )
            messages.success(request, f"Created the collection “{collection.name}”.")
            return redirect("knowledge:collection", collection.pk)
    context = {
        "collections": selectors.collections_with_counts(request.user),
        "form": form,
        "can_manage": _can_manage(request),
    }
    return render(request, "knowledge/index.html", context, status=400 if form.errors else 200)


@permission_required(roles.VIEW_KNOWLEDGE)
def collection(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        current = selectors.collection_get_for(request.user, pk)
    except ObjectDoesNotExist:
        raise Http404("No such collection.") from None
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST":
        if not _can_manage(request):
            return no_access(request)
        if form.is_valid():
            upload = form.cleaned_data["file"]
            stored = upload_store(upload)
            with jobs_watch() as submitted:
                source = services.source_upload(
                    collection=current,
                    kind=form.cleaned_data["kind"],
                    stored=stored,
                    name=upload.name or stored.name,
                    created_by=request.user,  # type: ignore[arg-type]
                )
            jobs_notify(request, submitted, f"Uploaded “{source.name}”; ingestion has started.")
            return redirect("knowledge:source", source.pk)
    context = {
        "collection": current,
        "sources": selectors.sources_for(current),
        "form": form,
        "can_manage": _can_manage(request),
    }
    return render(request, "knowledge/collection.html", context, status=400 if form.errors else 200)


@permission_required(roles.VIEW_KNOWLEDGE)
def source(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    try:
        current = selectors.source_get_for(request.user, pk)
    except ObjectDoesNotExist:
        raise Http404("No such source.") from None
    template = "knowledge/_source_progress.html" if request.htmx else "knowledge/source.html"
    context = {
        "source": current,
        "documents": selectors.documents_for(current)[:500],
        "can_manage": _can_manage(request),
    }
    return render(request, template, context)


@require_POST
@permission_required(roles.MANAGE_KNOWLEDGE)
def source_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    try:
        current = selectors.source_get_for(request.user, pk)
    except ObjectDoesNotExist:
        raise Http404("No such source.") from None
    if action == "reingest":
        with jobs_watch() as submitted:
            services.source_reingest(source=current)
        jobs_notify(request, submitted, f"Re-ingesting “{current.name}”.")
    elif action in {"enable", "disable"}:
        services.source_set_enabled(source=current, enabled=action == "enable")
        messages.success(request, f"“{current.name}” is now {action}d.")
    elif action == "delete":
        collection_id = current.collection_id
        services.source_delete(source=current)
        messages.success(request, f"Deleted “{current.name}” and everything made from it.")
        return redirect("knowledge:collection", collection_id)
    else:
        raise Http404("Unknown action.")
    return redirect("knowledge:source", current.pk)


@permission_required(roles.VIEW_KNOWLEDGE)
def document(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        current = selectors.document_get_for(request.user, pk)
    except ObjectDoesNotExist:
        raise Http404("No such document.") from None
    context = {"document": current, "chunks": selectors.chunks_for(current)}
    return render(request, "knowledge/document.html", context)
