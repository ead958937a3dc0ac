"""The chat websocket: one connection per open conversation page, answers streamed as HTML.

Protocol (the htmx ws extension on the page speaks it; benchmarks rely on it, keep it exact)

Client -> server, JSON as htmx `ws-send` produces it (form fields, plus a "HEADERS" key that is
ignored):
    {"message": "question text"}   ask; the turn is saved before the model is called
    {"action": "stop"}             stop the answer being written; the partial answer is kept

Server -> client: every frame is an HTML fragment whose outermost element(s) carry htmx
`hx-swap-oob` and `data-frame`:
    data-frame="start"  the question and an empty answer bubble appended to `#thread`
                        (plus the conversation's new title and a cleared input error)
    data-frame="token"  one piece of answer text, HTML-escaped, appended to the bubble:
                        <span id="answer-{turn_id}-text" hx-swap-oob="beforeend"
                              data-frame="token">{text}</span>
    data-frame="end"    `#answer-{turn_id}` replaced by the final answer (sanitised markdown) with
                        feedback controls; a stopped answer is marked "Stopped"
    data-frame="error"  either `#answer-{turn_id}` replaced by the model's failure in plain words
                        (and the partial answer), or, for bad input or a second question while
                        one is being answered, `#composer-error` showing the reason
    data-frame="tool"   a tool call the agent makes, shown above the answer: when it starts (or is
                        refused), its block `#tool-{span_id}` appended to `#answer-{turn_id}-steps`;
                        when it ends, that block replaced by its outcome (a short result,
                        expandable: the query and its table, a draft, a label; or the error)
    data-frame="escalation"  `#escalate-{turn_id}` replaced by the turn's escalation as it is now:
                        claimed, answered (with the human's reply) or resolved. Sent whenever a
                        reviewer or admin changes it, from whichever process they used: each
                        socket joins its conversation's group on the Channels layer
                        (`chatbot.chat.live`)

Refusals: the socket is accepted and then closed with 4401 (not signed in), 4403 (no chat
permission) or 4404 (not your conversation, or no such one). Closing after accepting, rather than
rejecting the handshake, lets the browser see the code: a rejected handshake reads as 1006, which
the htmx extension takes as a network failure and retries forever.

Access is checked again on every question, not only at connect (a socket stays open for hours):
the person is read again from the database, so an account deactivated since the page opened, a
role that lost the chat permission or a conversation that is no longer theirs is refused. The
question is not saved; the server sends a `#composer-error` error frame saying why, then closes
with 4401 (the account is no longer active), 4403 (no chat permission) or 4404 (the conversation).

An admin's change to the person's account is pushed too: each socket joins the person's group on
the Channels layer (`chatbot.accounts.live`); on "account.changed" it reads the person again and,
when they were deactivated or lost the chat permission, stops a running answer (kept as
cancelled), sends a `#composer-error` error frame saying why and closes with 4401 or 4403.

Limits (`chatbot.accounts.limits`): a question over the person's rate limit, their daily token
quota, or their cap on answers running at once (across tabs, sockets and API calls) is not saved;
a `#composer-error` error frame says which limit and when to try again, and the socket stays open.

Closing the page (disconnect) cancels a running answer; `turn_run` saves it as cancelled with the
partial answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.contrib.auth.models import AnonymousUser, User

from chatbot.accounts import live as account_live
from chatbot.accounts import roles
from chatbot.accounts.limits import (
    LimitExceeded,
    answer_admit,
    answer_slot_release,
    request_allow,
)
from chatbot.agent.loop import StepEvent
from chatbot.agent.turn import turn_run
from chatbot.chat import frames, live, selectors
from chatbot.chat.services import InvalidInput
from chatbot.models import Conversation, Turn
from chatbot.runtime.db import db_sync_to_async
from chatbot.runtime.statements import STAND_IN_IDS, Statement

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404

BUSY_MESSAGE = "Please wait for the current answer or press Stop."
UNREADABLE_MESSAGE = "That message could not be read. Reload the page and try again."
GONE_MESSAGE = "This conversation no longer exists. Start a new one."
ACCOUNT_CHANGED_MESSAGES = {
    CLOSE_UNAUTHENTICATED: "An admin deactivated your account, so this chat has been closed.",
    CLOSE_FORBIDDEN: "An admin changed your role and you no longer have access to chat.",
}
REVOKED_MESSAGES = {
    CLOSE_UNAUTHENTICATED: "Your account is no longer active, so this question was not sent.",
    CLOSE_FORBIDDEN: "You no longer have access to chat, so this question was not sent.",
}


def _refusal(user: User | AnonymousUser, conversation_id: int) -> int | None:
    if not user.is_authenticated:
        return CLOSE_UNAUTHENTICATED
    if not user.has_perm(roles.USE_CHAT):
        return CLOSE_FORBIDDEN
    try:
        selectors.conversation_get_for(user, conversation_id)
    except Conversation.DoesNotExist:
        return CLOSE_NOT_FOUND
    return None


# Read before every question a socket sends: compiled once per process.
_ACTIVE_USER = Statement(
    lambda user: User.objects.filter(pk=user, is_active=True), user=STAND_IN_IDS[0]
)


def _as_now(user: User | AnonymousUser) -> User | int:
    """The person as the database has them now (a fresh object: no cached permissions), or the
    close code when they may no longer chat."""
    found = _ACTIVE_USER.objects(User, user=user.pk) if user.pk else []
    fresh = found[0] if found else None
    if fresh is None:
        return CLOSE_UNAUTHENTICATED
    if not fresh.has_perm(roles.USE_CHAT):
        return CLOSE_FORBIDDEN
    return fresh


def _start_as_now(
    user: User | AnonymousUser, conversation_id: int, text: object
) -> tuple[User, Turn, str, str | None] | int:
    """Start the turn as the person is now, within their limits, in the same thread hop as saving
    the question; the close code when they may no longer ask. Returns the answer slot to give back.
    Raises like `frames.turn_start` (bad text, a conversation no longer theirs) and
    LimitExceeded."""
    fresh = _as_now(user)
    if isinstance(fresh, int):
        return fresh
    request_allow(user=fresh)
    slot = answer_admit(user=fresh)
    try:
        turn, start = frames.turn_start(fresh, conversation_id, text)
    except BaseException:
        answer_slot_release(user=fresh, token=slot)
        raise
    return fresh, turn, start, slot


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("chat answer task crashed", exc_info=task.exception())


class ChatConsumer(AsyncJsonWebsocketConsumer):
    user: User | AnonymousUser
    conversation_id: int
    allowed = False
    task: asyncio.Task[None] | None = None
    turn_id: int | None = None
    # The conversation's group on the Channels layer, joined once access is granted: a human's
    # reply to an escalation is announced there by whichever process saved it.
    group: str | None = None
    # The person's group: an admin's change to their account is announced there.
    account_group: str | None = None

    async def connect(self) -> None:
        self.user = self.scope.get("user") or AnonymousUser()
        self.conversation_id = int(self.scope["url_route"]["kwargs"]["conversation_id"])
        refusal = await db_sync_to_async(_refusal)(self.user, self.conversation_id)
        await self.accept()
        if refusal is not None:
            await self.close(code=refusal)
            return
        self.allowed = True
        self.group = live.conversation_group(self.conversation_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        assert isinstance(self.user, User)  # access was granted: a signed-in person
        self.account_group = account_live.account_group(self.user.pk)
        await self.channel_layer.group_add(self.account_group, self.channel_name)

    async def account_changed(self, event: dict[str, Any]) -> None:
        """From the person's group: an admin changed their account. Read it again; refused now,
        stop the answer being written and close as a question would have been closed."""
        fresh = await db_sync_to_async(_as_now)(self.user)
        if not isinstance(fresh, int):
            self.user = fresh
            return
        self.allowed = False
        await self._cancel()
        await self.send(text_data=frames.input_error_frame(ACCOUNT_CHANGED_MESSAGES[fresh]))
        await self.close(code=fresh)

    async def escalation_changed(self, event: dict[str, Any]) -> None:
        """From the group: re-render the turn's escalation (as the person may see it now)."""
        html = await db_sync_to_async(frames.escalation_frame)(self.user, int(event["turn_id"]))
        if html:
            await self.send(text_data=html)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        if not self.allowed:  # sent before the client saw the refusal
            return
        try:
            content = json.loads(text_data) if text_data else None
        except ValueError:
            content = None
        if not isinstance(content, dict):
            await self.send(text_data=frames.input_error_frame(UNREADABLE_MESSAGE))
            return
        await self.receive_json(content)

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        action = content.get("action")
        if action == "stop":
            await self._stop()
            return
        if action is not None:
            await self.send(text_data=frames.input_error_frame(UNREADABLE_MESSAGE))
            return
        if self.task is not None and not self.task.done():
            await self.send(text_data=frames.input_error_frame(BUSY_MESSAGE))
            return
        try:
            started = await db_sync_to_async(_start_as_now)(
                self.user, self.conversation_id, content.get("message")
            )
        except InvalidInput as exc:
            await self.send(text_data=frames.input_error_frame(str(exc)))
            return
        except LimitExceeded as exc:
            await self.send(text_data=frames.input_error_frame(exc.message))
            return
        except Conversation.DoesNotExist:
            await self.send(text_data=frames.input_error_frame(GONE_MESSAGE))
            await self.close(code=CLOSE_NOT_FOUND)
            return
        if isinstance(started, int):
            self.allowed = False
            await self.send(text_data=frames.input_error_frame(REVOKED_MESSAGES[started]))
            await self.close(code=started)
            return
        user, turn, start, slot = started
        self.user = user
        await self.send(text_data=start)
        self.turn_id = turn.pk
        self.task = asyncio.create_task(self._answer_in_slot(turn.pk, user, slot))
        self.task.add_done_callback(_log_crash)

    async def _answer_in_slot(self, turn_id: int, user: User, slot: str | None) -> None:
        try:
            await self._answer(turn_id)
        finally:
            # One Redis call, made inline so a cancelled answer cannot skip it.
            answer_slot_release(user=user, token=slot)

    async def _answer(self, turn_id: int) -> None:
        prefix = frames.token_prefix(turn_id)
        send = self.send

        async def emit(text: str) -> None:
            await send(text_data=frames.token_frame(prefix, text))

        shown: set[str] = set()

        async def on_step(event: StepEvent) -> None:
            first = event.id not in shown
            shown.add(event.id)
            await send(text_data=frames.step_frame(turn_id, event, first=first))

        outcome = await turn_run(turn_id=turn_id, emit=emit, on_step=on_step)
        kind = "end" if outcome.status == Turn.Status.DONE else "error"
        try:
            html = await db_sync_to_async(frames.answer_frame)(self.user, turn_id, kind)
        except Exception:  # the answer is saved; only its final rendering failed
            logger.exception("rendering the end of turn %s failed", turn_id)
            html = frames.input_error_frame("The answer is saved but could not be shown. Reload.")
        await self.send(text_data=html)

    async def _cancel(self) -> bool:
        """Cancel the running answer and wait until its partial answer is saved."""
        task = self.task
        if task is None or task.done():
            return False
        task.cancel()
        # wait() rather than `await task`: the task's CancelledError must not look like our own.
        await asyncio.wait({task})
        return task.cancelled()

    async def _stop(self) -> None:
        if await self._cancel() and self.turn_id is not None:
            html = await db_sync_to_async(frames.answer_frame)(self.user, self.turn_id, "end")
            await self.send(text_data=html)

    async def disconnect(self, code: int) -> None:
        await self._cancel()
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        if self.account_group is not None:
            await self.channel_layer.group_discard(self.account_group, self.channel_name)
