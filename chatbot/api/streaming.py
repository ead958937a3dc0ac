"""Running a saved turn while a streaming HTTP response is being sent.

The turn runs as its own task and hands each piece of text over a queue, so the response generator
can yield as the text arrives. When the client goes away, Django cancels the generator; the
`finally` below cancels the turn, which saves its partial answer as `cancelled` (see turn_run).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from django.http import StreamingHttpResponse

from chatbot.agent.turn import TurnOutcome, turn_run
from chatbot.llm.types import Overrides, Prompt

logger = logging.getLogger(__name__)

CRASHED = "Something went wrong on our side. Please try again."


@dataclass(frozen=True)
class Piece:
    text: str


@dataclass(frozen=True)
class Finished:
    outcome: TurnOutcome


@dataclass(frozen=True)
class Crashed:
    error: str


Event = Piece | Finished | Crashed


async def emit_nothing(text: str) -> None:
    """For answers sent whole: turn_run still streams, nobody listens to the pieces."""


async def turn_events(
    *,
    turn_id: int,
    requested_model: str | None = None,
    prompt: Prompt | None = None,
    overrides: Overrides | None = None,
) -> AsyncGenerator[Event, None]:
    """Pieces of the answer as they stream, then exactly one Finished (or Crashed)."""
    queue: asyncio.Queue[Event] = asyncio.Queue()

    async def emit(text: str) -> None:
        queue.put_nowait(Piece(text))

    async def run() -> None:
        try:
            outcome = await turn_run(
                turn_id=turn_id,
                emit=emit,
                requested_model=requested_model,
                prompt=prompt,
                overrides=overrides,
            )
        except asyncio.CancelledError:
            raise
        except Exception:  # turn_run records model errors itself; this is saving gone wrong
            logger.exception("turn %s could not be finished", turn_id)
            queue.put_nowait(Crashed(CRASHED))
        else:
            queue.put_nowait(Finished(outcome))

    task = asyncio.create_task(run())
    try:
        while True:
            event = await queue.get()
            yield event
            if not isinstance(event, Piece):
                return
    finally:
        if not task.done():
            task.cancel()
            # Wait for turn_run to save the partial answer; its re-raised cancellation ends here.
            with suppress(asyncio.CancelledError):
                await task


def sse_event(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def sse_data(data: Any) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n"


def sse_response(content: AsyncIterator[str]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(content, content_type="text/event-stream; charset=utf-8")
    # Proxies must pass each event on at once rather than buffer the whole answer.
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
