"""Admin console: the audit log, searchable and exportable (CSV or JSON lines). Read-only: the
product has no way to change or remove an entry, and Postgres refuses it (migration 0025). An
export is itself a sensitive read, and recorded."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime, time
from typing import Any

from django import forms
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone

from chatbot.accounts import roles
from chatbot.accounts.access import permission_required
from chatbot.models import AuditEntry
from chatbot.telemetry.audit import ACTIONS, action_label, audit_record

PAGE_SIZE = 50
EXPORT_FIELDS = (
    "id",
    "created_at",
    "category",
    "action",
    "actor_id",
    "actor_name",
    "target_type",
    "target_id",
    "target_repr",
    "details",
    "ip",
    "request_path",
)


class AuditSearchForm(forms.Form):
    category = forms.ChoiceField(
        choices=[("", "Any category"), *AuditEntry.Category.choices], required=False
    )
    action = forms.ChoiceField(
        choices=[("", "Any action"), *sorted((a, label) for a, (_, label) in ACTIONS.items())],
        required=False,
    )
    actor = forms.CharField(required=False, max_length=150, label="Person (username)")
    target = forms.CharField(
        required=False,
        max_length=200,
        label="Target contains",
        help_text="A type, an id or words of its name.",
    )
    start = forms.DateField(required=False, label="From", widget=forms.DateInput({"type": "date"}))
    end = forms.DateField(required=False, label="To", widget=forms.DateInput({"type": "date"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            raise forms.ValidationError("“From” is after “To”.")
        return data


def _day(value: Any, at: time) -> datetime:
    return timezone.make_aware(datetime.combine(value, at))


def audit_search(criteria: dict[str, Any]) -> QuerySet[AuditEntry]:
    entries = AuditEntry.objects.all()
    if criteria.get("category"):
        entries = entries.filter(category=criteria["category"])
    if criteria.get("action"):
        entries = entries.filter(action=criteria["action"])
    if criteria.get("actor"):
        entries = entries.filter(actor_name__iexact=criteria["actor"].strip())
    if target := (criteria.get("target") or "").strip():
        entries = entries.filter(
            Q(target_type__icontains=target)
            | Q(target_id=target)
            | Q(target_repr__icontains=target)
        )
    if criteria.get("start"):
        entries = entries.filter(created_at__gte=_day(criteria["start"], time.min))
    if criteria.get("end"):
        entries = entries.filter(created_at__lte=_day(criteria["end"], time.max))
    return entries.order_by("-created_at", "-pk")


class _Echo:
    """The file-like csv.writer needs; each write returns the line instead of storing it."""

    def write(self, value: str) -> str:
        return value


def _row(entry: AuditEntry) -> dict[str, Any]:
    row = {name: getattr(entry, name) for name in EXPORT_FIELDS}
    row["created_at"] = entry.created_at.isoformat()
    return row


def _csv_lines(entries: QuerySet[AuditEntry]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(EXPORT_FIELDS)
    for entry in entries.iterator(chunk_size=500):
        row = _row(entry)
        row["details"] = json.dumps(row["details"], sort_keys=True)
        # A cell a spreadsheet would run as a formula is written as text.
        yield writer.writerow([_cell(row[name]) for name in EXPORT_FIELDS])


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def _jsonl_lines(entries: QuerySet[AuditEntry]) -> Iterator[str]:
    for entry in entries.iterator(chunk_size=500):
        yield json.dumps(_row(entry), sort_keys=True) + "\n"


# A streamed export is not an HttpResponse subclass; the decorator passes it through as it is.
@permission_required(roles.MANAGE_SETTINGS)  # type: ignore[arg-type]
def audit_log(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    form = AuditSearchForm(request.GET or None)
    valid = not form.is_bound or form.is_valid()
    criteria = form.cleaned_data if form.is_bound and valid else {}
    entries = audit_search(criteria)
    export = request.GET.get("export", "")
    if valid and export in ("csv", "jsonl"):
        audit_record(
            "audit.export",
            details={
                "format": export,
                "filters": {k: str(v) for k, v in criteria.items() if v},
                "entries": entries.count(),
            },
        )
        lines = _csv_lines(entries) if export == "csv" else _jsonl_lines(entries)
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response = StreamingHttpResponse(
            lines,
            content_type="text/csv" if export == "csv" else "application/jsonl",
        )
        response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{export}"'
        return response
    page = Paginator(entries, PAGE_SIZE).get_page(request.GET.get("page")) if valid else None
    if page is not None:
        for entry in page.object_list:
            entry.label = action_label(entry.action)  # type: ignore[attr-defined]
            entry.details_text = (  # type: ignore[attr-defined]
                json.dumps(entry.details, ensure_ascii=False, sort_keys=True)
                if entry.details
                else ""
            )
    query = request.GET.copy()
    query.pop("page", None)
    query.pop("export", None)
    context = {"form": form, "page": page, "query": query.urlencode()}
    return render(request, "console/audit.html", context, status=200 if valid else 400)
