"""The chat socket and the person behind it: an admin's change to their role reaches the open
socket at once, and limits (answers at once across sockets, the token quota, the rate) come back as
error frames without closing the chat."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from chatbot.accounts import limits
from chatbot.chat import services
from chatbot.console import people_services
from chatbot.models import Turn
from tests.api.conftest import finished_turn
from tests.chat import test_consumer
from tests.chat.test_consumer import TIMEOUT, _ask, _frames_until, _kind

# alice's socket on a new conversation, as the consumer's own tests open it.
chat = test_consumer.chat

pytestmark = pytest.mark.django_db(transaction=True)


async def _closed_with(communicator) -> tuple[str, dict]:
    frame = await communicator.receive_from(timeout=TIMEOUT)
    return frame, await communicator.receive_output(timeout=TIMEOUT)


@pytest.mark.parametrize(
    ("change", "code", "reason"),
    [
        ("role", 4403, "changed your role"),
        ("deactivate", 4401, "deactivated your account"),
    ],
)
async def test_it_closes_an_open_socket_when_an_admin_takes_access_away(
    alice, adam, fake_endpoint, chat, change, code, reason
) -> None:
    await sync_to_async(fake_endpoint)()
    communicator, _ = await chat()

    if change == "role":
        await sync_to_async(people_services.person_role_set)(user=alice, role=None, by=adam)
    else:
        await sync_to_async(people_services.person_active_set)(user=alice, active=False, by=adam)
    frame, closed = await _closed_with(communicator)

    assert _kind(frame) == "error" and 'id="composer-error"' in frame and reason in frame
    assert closed == {"type": "websocket.close", "code": code}


async def test_it_stops_the_answer_being_written_when_access_is_taken_away(
    alice, adam, fake_endpoint, chat
) -> None:
    await sync_to_async(fake_endpoint)(["word " * 200], sleep=0.02)
    communicator, conversation = await chat()
    await _ask(communicator, "Write a long answer")
    assert _kind(await communicator.receive_from(timeout=TIMEOUT)) == "start"
    assert _kind(await communicator.receive_from(timeout=TIMEOUT)) == "token"

    await sync_to_async(people_services.person_active_set)(user=alice, active=False, by=adam)
    frames = []
    while True:
        output = await communicator.receive_output(timeout=TIMEOUT)
        if output["type"] == "websocket.close":
            break
        frames.append(output["text"])

    assert output["code"] == 4401
    assert "deactivated your account" in frames[-1]
    turn = await Turn.objects.aget(conversation=conversation)
    assert turn.status == Turn.Status.CANCELLED, "the partial answer is kept"
    assert await sync_to_async(limits.answers_running)(user=alice) == 0


async def test_it_keeps_the_socket_open_when_the_new_role_still_chats(
    alice, adam, fake_endpoint, chat
) -> None:
    await sync_to_async(fake_endpoint)(["Still here."])
    communicator, _ = await chat()

    await sync_to_async(people_services.person_role_set)(user=alice, role="reviewer", by=adam)
    assert await communicator.receive_nothing(timeout=0.3)
    await _ask(communicator, "Can I still ask?")
    frames = await _frames_until(communicator, {"end", "error"})

    assert _kind(frames[-1]) == "end" and "Still here." in frames[-1]


async def test_it_caps_answers_at_once_across_sockets(alice, settings, fake_endpoint, chat) -> None:
    settings.MAX_CONCURRENT_ANSWERS = 1
    await sync_to_async(fake_endpoint)(["word " * 200], sleep=0.02)
    first, _ = await chat()
    second, second_conversation = await chat()

    await _ask(first, "A long answer, please")
    assert _kind(await first.receive_from(timeout=TIMEOUT)) == "start"
    await _ask(second, "And another one")
    refused = await second.receive_from(timeout=TIMEOUT)

    assert _kind(refused) == "error" and "already have 1 answer" in refused
    assert not await Turn.objects.filter(conversation=second_conversation).aexists()

    await first.send_to(text_data=json.dumps({"action": "stop", "HEADERS": {}}))
    await _frames_until(first, {"end"})
    await _ask(second, "And now?")
    assert _kind(await second.receive_from(timeout=TIMEOUT)) == "start", "the slot came back"
    await second.send_to(text_data=json.dumps({"action": "stop", "HEADERS": {}}))
    await _frames_until(second, {"end"})


async def test_it_says_so_in_the_chat_when_the_quota_is_used(
    alice, settings, fake_endpoint, chat
) -> None:
    await sync_to_async(fake_endpoint)(["Fine."])
    communicator, conversation = await chat()
    other = await sync_to_async(services.conversation_create)(owner=alice)
    await sync_to_async(finished_turn)(other)
    settings.TOKEN_QUOTA_PER_DAY = 17

    await _ask(communicator, "One more?")
    frame = await communicator.receive_from(timeout=TIMEOUT)

    assert _kind(frame) == "error" and "today&#x27;s token quota" in frame
    assert "resets at 00:00 UTC" in frame
    assert not await Turn.objects.filter(conversation=conversation).aexists()
    assert await communicator.receive_nothing(timeout=0.2), "the socket stays open"


async def test_it_counts_questions_against_the_persons_rate(
    alice, settings, fake_endpoint, chat
) -> None:
    settings.RATE_LIMIT_PER_MINUTE = 1
    await sync_to_async(fake_endpoint)(["Fine."])
    communicator, conversation = await chat()

    await _ask(communicator, "First")
    await _frames_until(communicator, {"end", "error"})
    await _ask(communicator, "Second")
    frame = await communicator.receive_from(timeout=TIMEOUT)

    assert _kind(frame) == "error" and "Too many requests" in frame
    assert await Turn.objects.filter(conversation=conversation).acount() == 1
