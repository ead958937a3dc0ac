"""Conversations, their turns, and feedback on answers: the caller's own only."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import Router, Status
from ninja.pagination import paginate

from chatbot.api.auth import caller
from chatbot.api.pagination import BoundedPageNumberPagination
from chatbot.api.schemas import (
    ConversationDetailOut,
    ConversationIn,
    ConversationOut,
    ErrorOut,
    EscalationIn,
    EscalationOut,
    FeedbackIn,
    FeedbackSavedOut,
    PathId,
    conversation_out,
    escalation_out,
    turn_out,
)
from chatbot.chat import selectors, services
from chatbot.models import Conversation

router = Router(tags=["conversations"])

NOT_FOUND = {404: ErrorOut}


@router.get("/conversations", response=list[ConversationOut], summary="List your conversations")
@paginate(BoundedPageNumberPagination, page_size=20)
def conversation_list(request: HttpRequest) -> list[Conversation]:
    """Newest first, 20 a page (`?page=2`, `?page_size=50`, at most 100). A page past the last
    is empty; pages above 1,000 (`API_MAX_PAGE`) are refused."""
    # paginate slices the queryset; the list annotation is what the schema sees.
    return selectors.conversations_for(caller(request))  # type: ignore[return-value]


@router.post(
    "/conversations",
    response={201: ConversationOut},
    summary="Start a conversation",
)
def conversation_create(request: HttpRequest, payload: ConversationIn) -> Status[ConversationOut]:
    conversation = services.conversation_create(owner=caller(request), title=payload.title)
    return Status(201, conversation_out(conversation))


@router.get(
    "/conversations/{conversation_id}",
    response={200: ConversationDetailOut, **NOT_FOUND},
    summary="Read a conversation with its turns",
)
def conversation_read(request: HttpRequest, conversation_id: PathId) -> ConversationDetailOut:
    user = caller(request)
    conversation = selectors.conversation_get_for(user, conversation_id)
    turns = [turn_out(t) for t in selectors.turns_for(conversation, user)]
    return ConversationDetailOut(**conversation_out(conversation).model_dump(), turns=turns)


@router.delete(
    "/conversations/{conversation_id}",
    response={204: None, **NOT_FOUND},
    summary="Delete a conversation and its turns",
)
def conversation_delete(request: HttpRequest, conversation_id: PathId) -> HttpResponse:
    conversation = selectors.conversation_get_for(caller(request), conversation_id)
    services.conversation_delete(conversation=conversation)
    return HttpResponse(status=204)


@router.post(
    "/turns/{turn_id}/feedback",
    response={200: FeedbackSavedOut, 400: ErrorOut, **NOT_FOUND},
    summary="Rate an answer",
)
def feedback_set(request: HttpRequest, turn_id: PathId, payload: FeedbackIn) -> FeedbackSavedOut:
    """One rating per person per answer; sending again replaces it. The answer must be finished."""
    user = caller(request)
    turn = selectors.turn_get_for(user, turn_id)
    feedback = services.feedback_set(
        turn=turn, user=user, rating=payload.rating, comment=payload.comment
    )
    return FeedbackSavedOut(turn_id=turn.pk, rating=feedback.rating, comment=feedback.comment)


@router.post(
    "/turns/{turn_id}/escalate",
    response={200: EscalationOut, 400: ErrorOut, **NOT_FOUND},
    summary="Hand an answer over to a human",
)
def escalate(request: HttpRequest, turn_id: PathId, payload: EscalationIn) -> EscalationOut:
    """Marks the answer "needs a human". Asking again keeps the first request."""
    user = caller(request)
    turn = selectors.turn_get_for(user, turn_id)
    escalation = services.escalation_create(turn=turn, user=user, reason=payload.reason)
    return escalation_out(escalation)
