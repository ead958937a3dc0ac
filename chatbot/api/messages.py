"""Asking a question in a conversation: a JSON answer, or the answer streamed as server-sent events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.http import HttpRequest, StreamingHttpResponse
from ninja import Router, Status

from chatbot.accounts.limits import answer_slot_release
from chatbot.agent.turn import turn_run
from chatbot.api.admission import admitted, released_after
from chatbot.api.auth import caller
from chatbot.api.schemas import (
    ErrorOut,
    MessageIn,
    MessageOut,
    PathId,
    message_out,
    requested_model,
)
from chatbot.api.streaming import Crashed, Piece, emit_nothing, sse_event, sse_response, turn_events
from chatbot.chat import selectors, services
from chatbot.llm.router import route_choose
from chatbot.models import Turn
from chatbot.runtime.db import request_connection_release

router = Router(tags=["messages"])

STREAM_DOC = """
Saves the question as a turn first (so nothing is lost), then asks the model.

**`stream: false`** answers with JSON: `200` when the answer is done; `502` when the model failed,
with the same body, `status: "failed"` and `error` saying why in plain words (the turn is kept).

**`stream: true`** answers `200` with `text/event-stream`:

- `event: start` `data: {"turn_id": 12}`
- `event: token` `data: {"text": "Hel"}` as many times as the model sends text
- `event: done` (or `event: error` when the model failed) with the same body as the JSON answer.

If the client disconnects, the turn ends `cancelled` with the part of the answer that was sent.
"""


def _turn_start(
    user: User, conversation_id: int, message: str, model: str | None
) -> tuple[Turn, str | None]:
    """Save the question once the conversation, the model and the caller's limits allow it;
    returns the turn and the answer slot to give back."""
    conversation = selectors.conversation_get_for(user, conversation_id)
    if model:
        # An unknown or disabled model is the caller's mistake: refused before anything is saved.
        route_choose(requested=model)
    services.message_validate(message)
    return admitted(
        user, lambda: services.turn_create(conversation=conversation, user_text=message)
    )


async def _sse(turn_id: int, model: str | None) -> AsyncIterator[str]:
    yield sse_event("start", {"turn_id": turn_id})
    async with aclosing(turn_events(turn_id=turn_id, requested_model=model)) as events:
        async for event in events:
            if isinstance(event, Piece):
                yield sse_event("token", {"text": event.text})
            elif isinstance(event, Crashed):
                yield sse_event(
                    "error", {"turn_id": turn_id, "status": "failed", "error": event.error}
                )
            else:
                body = message_out(event.outcome).model_dump()
                yield sse_event("done" if body["status"] == Turn.Status.DONE else "error", body)


@router.post(
    "/conversations/{conversation_id}/messages",
    response={200: MessageOut, 400: ErrorOut, 404: ErrorOut, 502: MessageOut},
    summary="Ask a question (JSON or server-sent events)",
    description=STREAM_DOC,
    openapi_extra={
        "responses": {
            "200": {
                "content": {
                    # Each event, as an SSE parser hands it over (its `data` is JSON).
                    "text/event-stream": {
                        "schema": {
                            "type": "object",
                            "description": "When stream is true.",
                            "properties": {
                                "event": {"enum": ["start", "token", "done", "error"]},
                                "data": {"type": "string"},
                            },
                            "required": ["event", "data"],
                        }
                    }
                }
            }
        }
    },
)
async def message_send(
    request: HttpRequest, conversation_id: PathId, payload: MessageIn
) -> Status[MessageOut] | StreamingHttpResponse:
    model = requested_model(payload.model)
    user = caller(request)
    turn, slot = await sync_to_async(_turn_start)(user, conversation_id, payload.message, model)
    # The answer takes seconds: hold no connection for it (its own queries go to the db threads).
    await request_connection_release()
    if payload.stream:
        return sse_response(released_after(_sse(turn.pk, model), user=user, token=slot))
    try:
        outcome = await turn_run(turn_id=turn.pk, emit=emit_nothing, requested_model=model)
    finally:
        answer_slot_release(user=user, token=slot)
    status = 200 if outcome.status == Turn.Status.DONE else 502
    return Status(status, message_out(outcome))
