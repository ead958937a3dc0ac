"""The overview: numbers at a glance and charts over time, with filters and a CSV export."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from chatbot.accounts import roles
from chatbot.accounts.access import permission_required
from chatbot.chat import selectors as chat_selectors
from observability import dashboard, drift
from observability.forms import DashboardFilterForm
from observability.rollups import Filters


def _filters(form: DashboardFilterForm) -> Filters:
    data: dict[str, Any] = form.cleaned_data
    return Filters(
        start=data["start"],
        end=data["end"],
        endpoint_id=data["model"].pk if data.get("model") else None,
        route=data.get("route") or "",
        channel=data.get("channel") or "",
        group_id=data["group"].pk if data.get("group") else None,
        collection_id=data["collection"].pk if data.get("collection") else None,
    )


@permission_required(roles.VIEW_DASHBOARD)
def index(request: HttpRequest) -> HttpResponse:
    form = DashboardFilterForm(request.GET)
    context: dict[str, Any] = {
        "form": form,
        "tab": "overview",
        "routes": dashboard.routes_known(),
        "as_of": dashboard.rollups_as_of(),
        "firing": dashboard.alerts_firing(),
        "can_manage": request.user.has_perm(roles.MANAGE_SETTINGS),
        # The inbox as it is now (not filtered by dates): what still waits for a human.
        "escalations_now": chat_selectors.escalation_counts(),
    }
    if not form.is_valid():
        return render(request, "dashboard/index.html", context, status=400)
    filters = _filters(form)
    board = dashboard.dashboard_build(filters)
    context.update(
        # Week over week up to the last day shown; other filters do not apply to retrieval.
        drift=drift.drift_panel(end=filters.end, collection_id=filters.collection_id),
        board=board,
        total=board.total,
        chart_data=board.chart_data(),
        export_query=request.GET.urlencode(),
    )
    return render(request, "dashboard/index.html", context)


@permission_required(roles.VIEW_DASHBOARD)
def export(request: HttpRequest) -> HttpResponse:
    form = DashboardFilterForm(request.GET)
    if not form.is_valid():
        errors = " ".join(str(e) for errs in form.errors.values() for e in errs)
        return HttpResponse(errors, status=400, content_type="text/plain; charset=utf-8")
    filters = _filters(form)
    board = dashboard.dashboard_build(filters)
    response = HttpResponse(dashboard.dashboard_csv(board), content_type="text/csv; charset=utf-8")
    name = f"dashboard-{filters.start.isoformat()}-{filters.end.isoformat()}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
