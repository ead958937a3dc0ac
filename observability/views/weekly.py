"""The weekly reports: the stored weeks (newest first) and one week's report. Whoever may see the
dashboard reads them; admins may compute a week again or post it to the webhook."""

from __future__ import annotations

from datetime import date

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from chatbot.accounts import roles
from chatbot.accounts.access import permission_required
from chatbot.jobs import QUEUE_UNAVAILABLE, job_submit, jobs_watch
from chatbot.models import WeeklyReport
from chatbot.telemetry.audit import audit_record
from observability import weekly
from observability.weekly_text import CHANGES, GROUPS, HEADLINE, headline, rows

PAGE_SIZE = 26
RUN_TASK = "observability.weekly_reports_run"


def _report(week_start: str) -> WeeklyReport:
    try:
        day = date.fromisoformat(week_start)
    except ValueError:
        raise Http404("A week is named by its Monday, as 2026-03-02.") from None
    report = WeeklyReport.objects.filter(week_start=day).first()
    if report is None:
        raise Http404("No report for that week.")
    return report


@permission_required(roles.VIEW_DASHBOARD)
def index(request: HttpRequest) -> HttpResponse:
    page = Paginator(WeeklyReport.objects.order_by("-week_start"), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    weeks = [(report, headline(report.figures)) for report in page]
    context = {
        "page": page,
        "weeks": weeks,
        "headings": [c.label for key in HEADLINE for c in CHANGES if c.key == key],
        "tab": "weekly",
        "schedule_weeks": settings.WEEKLY_REPORT_BACKFILL_WEEKS,
        "time_zone": settings.TIME_ZONE,
        "webhook_set": bool(settings.WEEKLY_REPORT_WEBHOOK_URL),
        "can_manage": request.user.has_perm(roles.MANAGE_SETTINGS),
    }
    return render(request, "dashboard/weekly.html", context)


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def run_now(request: HttpRequest) -> HttpResponse:
    """What the Monday job does (the week just ended, and missing weeks before it), now, in the
    background: it recomputes the weeks' rollup hours first, which can take a while."""
    with jobs_watch() as submitted:
        job_submit(RUN_TASK)
    audit_record("weekly_report.run", details={"queued": submitted.all_sent})
    if submitted.all_sent:
        messages.success(
            request,
            "Computing the missing weekly reports in the background: reload in a minute.",
        )
    else:
        messages.warning(request, QUEUE_UNAVAILABLE)
    return redirect("dashboard:weekly")


@permission_required(roles.VIEW_DASHBOARD)
def detail(request: HttpRequest, week_start: str) -> HttpResponse:
    report = _report(week_start)
    figures = report.figures
    context = {
        "report": report,
        "figures": figures,
        "groups": [(title, rows(figures, key)) for key, title in GROUPS],
        "previous": WeeklyReport.objects.filter(week_start__lt=report.week_start)
        .order_by("-week_start")
        .only("week_start")
        .first(),
        "next": WeeklyReport.objects.filter(week_start__gt=report.week_start)
        .order_by("week_start")
        .only("week_start")
        .first(),
        "can_manage": request.user.has_perm(roles.MANAGE_SETTINGS),
        "webhook_set": bool(settings.WEEKLY_REPORT_WEBHOOK_URL),
        "tab": "weekly",
    }
    return render(request, "dashboard/weekly_report.html", context)


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def action(request: HttpRequest, week_start: str, action: str) -> HttpResponse:
    report = _report(week_start)
    if action == "recompute":
        report = weekly.weekly_report_recompute(report=report)
        messages.success(request, f"Computed {report.label} again from the current figures.")
    elif action == "post":
        if not settings.WEEKLY_REPORT_WEBHOOK_URL:
            messages.error(request, "No webhook is set: set WEEKLY_REPORT_WEBHOOK_URL first.")
        else:
            report = weekly.weekly_report_post(report=report)
            if report.delivery == WeeklyReport.Delivery.DELIVERED:
                messages.success(request, f"Posted {report.label} to the webhook.")
            else:
                messages.error(request, f"Posting failed: {report.delivery_error}")
    else:
        raise Http404("Unknown action.")
    return redirect("dashboard:weekly_report", week_start=report.week_start.isoformat())
