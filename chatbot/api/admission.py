"""Holding an answer slot (`chatbot.accounts.limits`) for exactly as long as an answer is written,
whether it is sent whole or streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from django.contrib.auth.models import User

from chatbot.accounts.limits import answer_admit, answer_slot_release

T = TypeVar("T")


def admitted(user: User, start: Callable[[], T]) -> tuple[T, str | None]:
    """Check the quota and take a slot, then `start` (which saves the question); a start that
    fails gives the slot back. Runs in the same thread hop as the save."""
    token = answer_admit(user=user)
    try:
        return start(), token
    except BaseException:
        answer_slot_release(user=user, token=token)
        raise


async def released_after(
    stream: AsyncIterator[str], *, user: User, token: str | None
) -> AsyncIterator[str]:
    """The stream, giving the slot back when it ends or the client goes away. (A client gone
    before the first piece leaves the slot to expire: ANSWER_SLOT_TTL_S.)"""
    try:
        async for piece in stream:
            yield piece
    finally:
        # A single Redis call: done inline so a cancellation cannot skip it.
        answer_slot_release(user=user, token=token)
