"""The escalation inbox (reviewers and admins): what people handed over to a human, oldest
first; each one's page to claim it, reply to the asker (the reply appears in their conversation
as it is sent), resolve it, and keep the reply as a dataset item."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone

from chatbot.accounts import roles
from chatbot.accounts.access import permission_required, signed_in_user
from chatbot.chat import selectors as chat_selectors
from chatbot.chat import services
from chatbot.models import Escalation
from chatbot.telemetry.audit import audit_record
from evaluation.escalations import selectors

PAGE_SIZE = 25
# Each button's service and what the person is told once it is done.
ACTIONS: dict[str, tuple[Callable[..., Escalation], str]] = {
    "claim": (services.escalation_claim, "You claimed this escalation."),
    "release": (
        services.escalation_release,
        "The escalation is back in the inbox for anyone to take.",
    ),
    "answer": (services.escalation_answer, "Your reply is in the person's conversation."),
    "resolve": (services.escalation_resolve, "The escalation is resolved."),
}


@permission_required(roles.REVIEW_ANSWERS)
def inbox(request: HttpRequest) -> HttpResponse:
    filters = selectors.InboxFilters.from_query(request.GET)
    rows = selectors.inbox(filters, user=signed_in_user(request))
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "tab": "escalations",
        "page": page,
        "filters": filters,
        "views": selectors.VIEWS,
        "query": urlencode({"show": filters.show}),
        "counts": chat_selectors.escalation_counts(),
        "now": timezone.now(),
    }
    template = (
        "review/_escalations_table.html"
        if request.headers.get("HX-Request")
        else "review/escalations.html"
    )
    return render(request, template, context)


@permission_required(roles.REVIEW_ANSWERS)
def escalation(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        item = selectors.escalation_get(pk)
    except Escalation.DoesNotExist:
        raise Http404("No such escalation.") from None
    reply = item.answer
    error = ""
    user = signed_in_user(request)
    if request.method == "POST":
        action = request.POST.get("action", "")
        reply = request.POST.get("answer", reply)
        try:
            if action not in ACTIONS:
                raise services.InvalidInput("Unknown action.")
            act, done = ACTIONS[action]
            act(escalation=item, user=user, **({"text": reply} if action == "answer" else {}))
        except services.InvalidInput as exc:
            error = str(exc)
        else:
            messages.success(request, done)
            return redirect("review:escalation", item.pk)
        # Refused: show the escalation as it is now (someone else may have just claimed it).
        item = selectors.escalation_get(pk)
    if request.method != "POST":
        audit_record(
            "read.escalation",
            target=item.turn.conversation,
            details={"escalation": item.pk, "turn": item.turn_id},
        )
    context = {
        "tab": "escalations",
        "escalation": item,
        "turn": item.turn,
        "reply": reply,
        "error": error,
        "mine": item.claimed_by_id == user.pk,
        "can_release": services.escalation_may_release(item, user),
        "can_trace": user.has_perm(roles.VIEW_DASHBOARD),
    }
    return render(request, "review/escalation.html", context, status=400 if error else 200)
