"""The turn search page and a turn's trace page."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from chatbot.accounts import roles
from chatbot.accounts.access import permission_required
from chatbot.compliance.pii import pii_visible, redactor
from chatbot.models import Turn
from chatbot.telemetry.audit import audit_record
from observability import selectors
from observability.forms import ReplayForm, TurnSearchForm

PAGE_SIZE = 50


@permission_required(roles.VIEW_DASHBOARD)
def turns(request: HttpRequest) -> HttpResponse:
    form = TurnSearchForm(request.GET or None)
    page = None
    if not form.is_bound or form.is_valid():
        criteria = form.cleaned_data if form.is_bound else {}
        paginator = Paginator(selectors.turns_search(criteria), PAGE_SIZE)
        page = paginator.get_page(request.GET.get("page"))
        rows = selectors.turns_page_details(list(page.object_list))
        redact = redactor(request.user)
        for row in rows:
            row.question = redact(row.user_text[:300])  # type: ignore[attr-defined]
        page.object_list = rows
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": form, "page": page, "query": query.urlencode(), "tab": "turns"}
    return render(request, "dashboard/turns.html", context, status=400 if form.errors else 200)


@permission_required(roles.VIEW_DASHBOARD)
def turn(
    request: HttpRequest, turn_id: int, *, replay_form: ReplayForm | None = None
) -> HttpResponse:
    try:
        current = selectors.turn_for_trace(turn_id)
    except Turn.DoesNotExist:
        raise Http404("No such turn.") from None
    can_replay = request.user.has_perm(roles.MANAGE_SETTINGS)
    redact = redactor(request.user)
    if pii_visible(request.user) and request.method == "GET":
        audit_record(
            "read.trace", target=current, details={"conversation": current.conversation_id}
        )
    feedback = list(current.feedback.all())
    for entry in feedback:
        entry.comment = redact(entry.comment)
    context = {
        "turn": current,
        "question": redact(current.user_text),
        "answer": redact(current.answer),
        "spans": current.spans.all(),
        "scores": current.judge_scores.all(),
        "feedback": feedback,
        "citations": current.citations.all(),
        "reviews": current.reviews.all(),
        "replay_jobs": selectors.replays_of(current)[:20],
        # A refused replay shows its form with the reason, even on a replay's own page.
        "replay_form": replay_form
        if replay_form is not None and replay_form.errors
        else (ReplayForm() if can_replay and not current.is_replay else None),
        "tab": "turns",
    }
    status = 400 if replay_form is not None and replay_form.errors else 200
    return render(request, "dashboard/turn.html", context, status=status)
