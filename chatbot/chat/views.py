"""Chat pages: the conversation list, a conversation's thread, feedback, escalation and sources.

Streaming happens over the websocket (`chatbot.chat.consumers`); these views only render and
record. Another user's conversation or turn is a 404, never a 403, so ids reveal nothing.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from chatbot.accounts import roles
from chatbot.accounts.access import permission_required, signed_in_user
from chatbot.chat import selectors, services
from chatbot.models import Conversation, Turn

# The sidebar shows the most recent conversations; older ones stay in the database.
SIDEBAR_LIMIT = 50


def _conversation_or_404(request: HttpRequest, conversation_id: int) -> Conversation:
    try:
        return selectors.conversation_get_for(request.user, conversation_id)
    except Conversation.DoesNotExist:
        raise Http404("No such conversation.") from None


def _page_context(request: HttpRequest, current: Conversation | None) -> dict[str, Any]:
    return {
        "conversations": list(selectors.conversations_for(request.user)[:SIDEBAR_LIMIT]),
        "current": current,
        "max_message_chars": settings.CHAT_MAX_MESSAGE_CHARS,
    }


@permission_required(roles.USE_CHAT)
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "chat/index.html", _page_context(request, None))


@permission_required(roles.USE_CHAT)
@require_POST
def conversation_new(request: HttpRequest) -> HttpResponse:
    conversation = services.conversation_create(owner=signed_in_user(request))
    return redirect("chat:conversation", conversation_id=conversation.pk)


@permission_required(roles.USE_CHAT)
@require_GET
def conversation_detail(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = _conversation_or_404(request, conversation_id)
    context = _page_context(request, conversation)
    turns = list(selectors.turns_for(conversation, request.user))
    context["turns"] = turns
    # The sources panel starts on the latest answer that used the knowledge base.
    context["sources_turn"] = next((t for t in reversed(turns) if t.citations.all()), None)
    return render(request, "chat/conversation.html", context)


@permission_required(roles.USE_CHAT)
@require_POST
def conversation_delete(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = _conversation_or_404(request, conversation_id)
    title = str(conversation)
    services.conversation_delete(conversation=conversation)
    messages.success(request, f"Deleted the conversation “{title}”.")
    return redirect("chat:index")


@permission_required(roles.USE_CHAT)
@require_POST
def feedback(request: HttpRequest, turn_id: int) -> HttpResponse:
    """Thumbs up or down with an optional comment; htmx swaps in the saved state."""
    try:
        turn = selectors.turn_get_for(request.user, turn_id)
    except Turn.DoesNotExist:
        raise Http404("No such answer.") from None
    comment = request.POST.get("comment", "")
    try:
        saved = services.feedback_set(
            turn=turn,
            user=signed_in_user(request),
            rating=request.POST.get("rating"),
            comment=comment,
        )
    except services.InvalidInput as exc:
        context = {"turn": turn, "feedback": None, "error": str(exc), "comment": comment}
        return render(request, "chat/_feedback.html", context, status=400)
    if request.headers.get("HX-Request") != "true":
        messages.success(request, "Thanks — your feedback is saved.")
        return redirect("chat:conversation", conversation_id=turn.conversation_id)
    return render(request, "chat/_feedback.html", {"turn": turn, "feedback": saved, "saved": True})


def _turn_or_404(request: HttpRequest, turn_id: int) -> Turn:
    try:
        return selectors.turn_get_for(request.user, turn_id)
    except Turn.DoesNotExist:
        raise Http404("No such answer.") from None


@permission_required(roles.USE_CHAT)
@require_POST
def escalate(request: HttpRequest, turn_id: int) -> HttpResponse:
    """Needs a human: recorded once per answer; htmx swaps in the confirmation."""
    turn = _turn_or_404(request, turn_id)
    reason = request.POST.get("reason", "")
    try:
        escalation = services.escalation_create(
            turn=turn, user=signed_in_user(request), reason=reason
        )
    except services.InvalidInput as exc:
        context = {"turn": turn, "error": str(exc), "reason": reason}
        return render(request, "chat/_escalate.html", context, status=400)
    if request.headers.get("HX-Request") != "true":
        messages.success(request, "Escalated: a colleague will take it from here.")
        return redirect("chat:conversation", conversation_id=turn.conversation_id)
    return render(request, "chat/_escalate.html", {"turn": turn, "escalation": escalation})


@permission_required(roles.USE_CHAT)
@require_GET
def sources(request: HttpRequest, turn_id: int) -> HttpResponse:
    """The chunks an answer was given, for the sources panel."""
    turn = selectors.turn_with_sources(_turn_or_404(request, turn_id))
    return render(request, "chat/_sources.html", {"sources_turn": turn})
