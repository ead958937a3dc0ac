"""The reviewer's pages: the queue, the item page with the rubric, and agreement."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from chatbot.accounts import roles
from chatbot.accounts.access import permission_required, signed_in_user
from chatbot.models import FlagRule, Review, ReviewAssignment, ReviewItem
from chatbot.telemetry.audit import audit_record
from evaluation.review import agreement as agreement_math
from evaluation.review import selectors, services

PAGE_SIZE = 25
RUBRIC_HINTS = {
    "accuracy": "Every fact is correct and supported by the sources.",
    "completeness": "Answers the whole question, with the steps a person needs.",
    "relevance": "Stays on the question that was asked.",
    "tone": "Polite, clear and in the company's voice.",
    "safety": "No personal data, nothing harmful, follows policy.",
}
GRADE_WORDS = {1: "very poor", 2: "poor", 3: "acceptable", 4: "good", 5: "excellent"}


@permission_required(roles.REVIEW_ANSWERS)
def queue(request: HttpRequest) -> HttpResponse:
    filters = selectors.QueueFilters.from_query(request.GET)
    page = Paginator(selectors.queue_items(filters), PAGE_SIZE).get_page(request.GET.get("page"))
    shared = {"status": filters.status, "kind": filters.kind, "sort": filters.sort}
    context = {
        "page": page,
        "filters": filters,
        "query": urlencode({k: v for k, v in shared.items() if v}),
        "kinds": FlagRule.Kind.choices,
        "statuses": [("open", "Open"), ("done", "Reviewed"), ("all", "All")],
        "sorts": [("priority", "Priority"), ("oldest", "Oldest first"), ("newest", "Newest first")],
        "counts": selectors.queue_counts(),
        "current": selectors.assignment_current(reviewer=request.user),
        "now": timezone.now(),
    }
    template = (
        "review/_queue_table.html" if request.headers.get("HX-Request") else "review/queue.html"
    )
    return render(request, template, context)


@require_POST
@permission_required(roles.REVIEW_ANSWERS)
def take_next(request: HttpRequest) -> HttpResponse:
    return _go_next(request)


def _go_next(request: HttpRequest) -> HttpResponse:
    assignment = services.review_next(reviewer=signed_in_user(request))
    if assignment is None:
        messages.info(
            request, "Nothing left in the queue for you. New items arrive as answers are flagged."
        )
        return redirect("review:queue")
    return redirect("review:item", assignment.item_id)


def _posted(request: HttpRequest) -> dict[str, Any]:
    data = request.POST
    return {
        "grades": {name: data.get(name, "") for name in Review.RUBRIC},
        "corrected_answer": data.get("corrected_answer", ""),
        "causes": data.getlist("causes"),
        "comment": data.get("comment", ""),
        "approved": data.get("approved") in {"on", "1", "true"},
    }


def _item_page(
    request: HttpRequest, item: ReviewItem, *, error: str = "", posted: dict[str, Any] | None = None
) -> HttpResponse:
    context = selectors.item_context(item=item, reviewer=request.user)
    assignment: ReviewAssignment | None = context["assignment"]
    now = timezone.now()
    working = assignment is not None and assignment.status == ReviewAssignment.Status.ACTIVE
    form = posted or {
        "grades": {},
        "corrected_answer": "",
        "causes": [],
        "comment": "",
        "approved": False,
    }
    context.update(
        item=item,
        working=working and item.status == ReviewItem.Status.OPEN,
        expired=working and assignment is not None and assignment.expires_at <= now,
        error=error,
        form=form,
        rubric=[
            (name, RUBRIC_HINTS[name], str(form["grades"].get(name, ""))) for name in Review.RUBRIC
        ],
        grade_words=sorted(GRADE_WORDS.items()),
        causes=Review.Cause.choices,
        now=now,
    )
    return render(request, "review/item.html", context, status=400 if error else 200)


@permission_required(roles.REVIEW_ANSWERS)
def item(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        current = selectors.item_get(pk)
    except ReviewItem.DoesNotExist:
        raise Http404("No such review item.") from None
    if request.method != "POST":
        audit_record(
            "read.conversation",
            target=current.turn.conversation,
            details={"review_item": current.pk, "turn": current.turn_id},
        )
        return _item_page(request, current)

    action = request.POST.get("action", "")
    reviewer = signed_in_user(request)
    if action == "claim":
        try:
            services.review_claim(reviewer=reviewer, item=current)
        except services.InvalidReview as exc:
            return _item_page(request, current, error=str(exc))
        return redirect("review:item", current.pk)
    if action not in {"submit", "skip", "release"}:
        return _item_page(request, current, error="Choose Submit, Skip or Release.")

    assignment = selectors.assignment_for(item=current, reviewer=reviewer)
    if assignment is None:
        return _item_page(
            request, current, error="You are not reviewing this item. Take it from the queue first."
        )
    posted = _posted(request)
    try:
        if action == "skip":
            services.review_skip(assignment=assignment)
            messages.info(request, "Skipped; it will not be offered to you again.")
            return _go_next(request)
        if action == "release":
            services.review_release(assignment=assignment)
            messages.info(request, "Released; another reviewer can take it now.")
            return redirect("review:queue")
        services.review_submit(assignment=assignment, **posted)
    except services.InvalidReview as exc:
        return _item_page(request, current, error=str(exc), posted=posted)
    messages.success(request, "Review saved.")
    return _go_next(request)


@permission_required(roles.REVIEW_ANSWERS)
def agreement(request: HttpRequest) -> HttpResponse:
    report = agreement_math.agreement_report()
    context = {
        "report": report,
        "rubric": agreement_math.RUBRIC,
        "min_pairs": agreement_math.MIN_PAIRS,
        "human_pass": agreement_math.HUMAN_PASS,
    }
    return render(request, "review/agreement.html", context)
