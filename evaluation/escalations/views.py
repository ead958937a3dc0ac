"""The escalation inbox (reviewers and admins): what people handed over to a human, oldest
first; each one's page to claim it, reply to the asker (the reply appears in their conversation
as it is sent), resolve it, and keep the reply as a dataset item."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.models import User
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone

from chatbot.accounts import roles
from chatbot.accounts.access import permission_required
from chatbot.chat import selectors as chat_selectors
from chatbot.chat import services
from chatbot.models import Escalation
from evaluation.escalations import selectors

PAGE_SIZE = 25
ACTIONS = {
    "claim": "You claimed this escalation.",
    "release": "The escalation is back in the inbox for anyone to take.",
    "answer": "Your reply is in the person's conversation.",
    "resolve": "The escalation is resolved.",
}


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


@permission_required(roles.REVIEW_ANSWERS)
def inbox(request: HttpRequest) -> HttpResponse:
    filters = selectors.InboxFilters.from_query(request.GET)
    rows = selectors.inbox(filters, user=_user(request))
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
    if request.method == "POST":
        action = request.POST.get("action", "")
        user = _user(request)
        reply = request.POST.get("answer", reply)
        try:
            if action == "claim":
                services.escalation_claim(escalation=item, user=user)
            elif action == "release":
                services.escalation_release(escalation=item, user=user)
            elif action == "answer":
                services.escalation_answer(escalation=item, user=user, text=reply)
            elif action == "resolve":
                services.escalation_resolve(escalation=item, user=user)
            else:
                raise services.InvalidInput("Unknown action.")
        except services.InvalidInput as exc:
            error = str(exc)
        else:
            messages.success(request, ACTIONS[action])
            return redirect("review:escalation", item.pk)
        item = selectors.escalation_get(pk)
    context = {
        "tab": "escalations",
        "escalation": item,
        "turn": item.turn,
        "reply": reply,
        "error": error,
        "mine": item.claimed_by_id == request.user.pk,
        "can_release": item.claimed_by_id is not None
        and (item.claimed_by_id == request.user.pk or request.user.has_perm(roles.MANAGE_SETTINGS)),
        "can_trace": request.user.has_perm(roles.VIEW_DASHBOARD),
    }
    return render(request, "review/escalation.html", context, status=400 if error else 200)
