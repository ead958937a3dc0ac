"""The chat websocket, driven through the real ASGI stack (origin check, session auth, routing)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator, Callable

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client

from chatbot.asgi import application
from chatbot.chat import services
from chatbot.models import Conversation, Turn

pytestmark = pytest.mark.django_db(transaction=True)

FRAME_KIND = re.compile(r'^\s*<[a-z0-9]+ [^>]*data-frame="(start|token|end|error|escalation|tool)"')
TOKEN = re.compile(
    r'^<span id="answer-(\d+)-text" hx-swap-oob="beforeend" data-frame="token">(.*)</span>$',
    re.DOTALL,
)
TIMEOUT = 10


def _session_cookie(user: User) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


async def _connect(user: User | None, conversation_id: int) -> WebsocketCommunicator:
    headers = [(b"origin", b"http://testserver")]
    if user is not None:
        cookie = await sync_to_async(_session_cookie)(user)
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    return WebsocketCommunicator(application, f"/ws/chat/{conversation_id}/", headers=headers)


@pytest.fixture
async def chat(alice) -> AsyncIterator[Callable[..., object]]:
    """Opens alice's socket on a new conversation; closes whatever was opened at the end."""
    opened: list[WebsocketCommunicator] = []

    async def open_chat(user: User | None = None) -> tuple[WebsocketCommunicator, Conversation]:
        conversation = await sync_to_async(services.conversation_create)(owner=alice)
        communicator = await _connect(user or alice, conversation.pk)
        connected, _ = await communicator.connect(timeout=TIMEOUT)
        assert connected
        opened.append(communicator)
        return communicator, conversation

    yield open_chat
    for communicator in opened:
        await communicator.disconnect(timeout=TIMEOUT)


def _kind(frame: str) -> str:
    match = FRAME_KIND.match(frame)
    assert match, f"every frame carries data-frame on its outermost element: {frame[:120]!r}"
    return match.group(1)


async def _ask(communicator: WebsocketCommunicator, text: str) -> None:
    # What htmx ws-send produces: the form fields plus the request headers.
    await communicator.send_to(
        text_data=json.dumps({"message": text, "HEADERS": {"HX-Request": "true"}})
    )


async def _frames_until(
    communicator: WebsocketCommunicator, last: set[str], limit: int = 5000
) -> list[str]:
    frames: list[str] = []
    for _ in range(limit):
        frame = await communicator.receive_from(timeout=TIMEOUT)
        frames.append(frame)
        if _kind(frame) in last:
            return frames
    raise AssertionError(f"no {last} frame after {limit} frames")


def _tokens(frames: list[str]) -> str:
    text = []
    for frame in frames:
        if _kind(frame) == "token":
            match = TOKEN.match(frame)
            assert match, frame
            text.append(html.unescape(match.group(2)))
    return "".join(text)


async def test_it_streams_token_frames_then_an_end_frame(alice, fake_endpoint, chat) -> None:
    await sync_to_async(fake_endpoint)(["The link expires after **30 minutes**."])
    communicator, conversation = await chat()

    await _ask(communicator, "How long is the reset link valid?")
    frames = await _frames_until(communicator, {"end", "error"})

    kinds = [_kind(f) for f in frames]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert kinds.count("token") > 1, "the answer arrives in pieces"
    assert set(kinds[1:-1]) == {"token"}
    turn = await Turn.objects.aget(conversation=conversation)
    assert 'hx-swap-oob="beforeend"' in frames[0] and f'id="answer-{turn.pk}-text"' in frames[0]
    assert "How long is the reset link valid?" in frames[0]
    assert _tokens(frames) == "The link expires after **30 minutes**."
    assert f'<div id="answer-{turn.pk}"' in frames[-1]
    assert 'hx-swap-oob="true"' in frames[-1]
    assert "<strong>30 minutes</strong>" in frames[-1], "the end frame renders markdown"
    assert f"/chat/turns/{turn.pk}/feedback/" in frames[-1], "feedback controls come with it"
    assert turn.status == Turn.Status.DONE
    assert turn.answer == "The link expires after **30 minutes**."


async def test_it_escapes_token_text(alice, fake_endpoint, chat) -> None:
    await sync_to_async(fake_endpoint)(["<script>alert(1)</script> & done"])
    communicator, _ = await chat()

    await _ask(communicator, "Say something nasty")
    frames = await _frames_until(communicator, {"end", "error"})

    assert not any("<script" in f for f in frames)
    assert _tokens(frames) == "<script>alert(1)</script> & done"
    assert "&lt;script&gt;" in frames[-1]


@pytest.mark.parametrize(
    ("text", "message"),
    [("   ", "The message is empty"), ("x" * 4001, "The message is too long")],
)
async def test_it_refuses_bad_messages_without_saving_a_turn(
    alice, fake_endpoint, chat, text, message
) -> None:
    await sync_to_async(fake_endpoint)()
    communicator, conversation = await chat()

    await _ask(communicator, text)
    frame = await communicator.receive_from(timeout=TIMEOUT)

    assert _kind(frame) == "error"
    assert 'id="composer-error"' in frame and message in frame
    assert not await Turn.objects.filter(conversation=conversation).aexists()
    assert await communicator.receive_nothing(timeout=0.2)


async def test_it_answers_unreadable_frames_with_an_error(alice, chat) -> None:
    communicator, _ = await chat()
    await communicator.send_to(text_data="not json")
    frame = await communicator.receive_from(timeout=TIMEOUT)
    assert _kind(frame) == "error" and "could not be read" in frame


async def _refusal_code(user: User | None, conversation_id: int) -> int:
    communicator = await _connect(user, conversation_id)
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected, "refusals are accepted then closed, so the browser sees the code"
    output = await communicator.receive_output(timeout=TIMEOUT)
    await communicator.disconnect(timeout=TIMEOUT)
    assert output["type"] == "websocket.close"
    return int(output["code"])


async def test_it_refuses_nora(nora, alice) -> None:
    own = await sync_to_async(services.conversation_create)(owner=nora)
    assert await _refusal_code(nora, own.pk) == 4403


async def test_it_refuses_anonymous_visitors(alice) -> None:
    conversation = await sync_to_async(services.conversation_create)(owner=alice)
    assert await _refusal_code(None, conversation.pk) == 4401


async def test_it_refuses_another_users_conversation(alice, rita) -> None:
    conversation = await sync_to_async(services.conversation_create)(owner=alice)
    assert await _refusal_code(rita, conversation.pk) == 4404
    assert await _refusal_code(rita, 987654321) == 4404


@pytest.mark.parametrize(
    ("change", "code", "reason"),
    [("deactivated", 4401, "no longer active"), ("demoted", 4403, "no longer have access")],
)
async def test_it_refuses_a_question_on_an_open_socket_once_access_is_gone(
    alice, fake_endpoint, chat, change, code, reason
) -> None:
    await sync_to_async(fake_endpoint)()
    communicator, conversation = await chat()
    if change == "deactivated":
        await User.objects.filter(pk=alice.pk).aupdate(is_active=False)
    else:
        await sync_to_async(alice.groups.clear)()

    await _ask(communicator, "Am I still allowed?")
    frame = await communicator.receive_from(timeout=TIMEOUT)
    closed = await communicator.receive_output(timeout=TIMEOUT)

    assert _kind(frame) == "error"
    assert 'id="composer-error"' in frame and reason in frame
    assert closed == {"type": "websocket.close", "code": code}
    assert not await Turn.objects.filter(conversation=conversation).aexists(), "nothing is saved"


async def test_it_refuses_a_foreign_origin(alice) -> None:
    conversation = await sync_to_async(services.conversation_create)(owner=alice)
    cookie = await sync_to_async(_session_cookie)(alice)
    communicator = WebsocketCommunicator(
        application,
        f"/ws/chat/{conversation.pk}/",
        headers=[(b"origin", b"http://evil.example"), (b"cookie", f"sessionid={cookie}".encode())],
    )
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert not connected


async def test_it_stops_mid_stream_and_keeps_the_partial_answer(alice, fake_endpoint, chat) -> None:
    full = "word " * 200
    await sync_to_async(fake_endpoint)([full], sleep=0.02)
    communicator, conversation = await chat()

    await _ask(communicator, "Write a long answer")
    assert _kind(await communicator.receive_from(timeout=TIMEOUT)) == "start"
    for _ in range(5):
        assert _kind(await communicator.receive_from(timeout=TIMEOUT)) == "token"
    await communicator.send_to(text_data=json.dumps({"action": "stop", "HEADERS": {}}))
    frames = await _frames_until(communicator, {"end", "error"})

    assert _kind(frames[-1]) == "end"
    assert "Stopped" in frames[-1]
    turn = await Turn.objects.aget(conversation=conversation)
    assert turn.status == Turn.Status.CANCELLED
    assert turn.answer and len(turn.answer) < len(full)
    assert full.startswith(turn.answer)


async def test_it_refuses_a_second_question_while_answering(alice, fake_endpoint, chat) -> None:
    await sync_to_async(fake_endpoint)(["slow " * 100], sleep=0.02)
    communicator, conversation = await chat()

    await _ask(communicator, "First question")
    assert _kind(await communicator.receive_from(timeout=TIMEOUT)) == "start"
    await _ask(communicator, "Second question")
    frames = await _frames_until(communicator, {"error"})

    assert "wait for the current answer or press Stop" in frames[-1]
    assert 'id="composer-error"' in frames[-1]
    assert await Turn.objects.filter(conversation=conversation).acount() == 1
    await communicator.send_to(text_data=json.dumps({"action": "stop"}))
    await _frames_until(communicator, {"end"})


async def test_it_cancels_the_answer_when_the_page_goes_away(alice, fake_endpoint) -> None:
    full = "token " * 200
    await sync_to_async(fake_endpoint)([full], sleep=0.02)
    conversation = await sync_to_async(services.conversation_create)(owner=alice)
    communicator = await _connect(alice, conversation.pk)
    assert (await communicator.connect(timeout=TIMEOUT))[0]

    await _ask(communicator, "Write a long answer")
    assert _kind(await communicator.receive_from(timeout=TIMEOUT)) == "start"
    for _ in range(5):
        await communicator.receive_from(timeout=TIMEOUT)
    await communicator.disconnect(timeout=TIMEOUT)

    turn = await Turn.objects.aget(conversation=conversation)
    assert turn.status == Turn.Status.CANCELLED
    assert turn.answer and full.startswith(turn.answer) and len(turn.answer) < len(full)


async def test_it_reports_a_model_failure_in_plain_words(alice, fake_endpoint, chat) -> None:
    await sync_to_async(fake_endpoint)(["abcdefgh"], error_on_chunk=3)
    communicator, conversation = await chat()

    await _ask(communicator, "Will this work?")
    frames = await _frames_until(communicator, {"end", "error"})

    turn = await Turn.objects.aget(conversation=conversation)
    assert _kind(frames[-1]) == "error"
    assert f'<div id="answer-{turn.pk}"' in frames[-1]
    assert "failed to answer" in frames[-1] and 'role="alert"' in frames[-1]
    assert "abc" in frames[-1], "the partial answer is shown with the error"
    assert "Traceback" not in frames[-1] and "FakeListChatModelError" not in frames[-1]
    assert turn.status == Turn.Status.FAILED and turn.answer == "abc"


async def test_it_shows_a_humans_reply_in_the_conversation_as_it_is_sent(
    alice, rita, fake_endpoint, chat
) -> None:
    await sync_to_async(fake_endpoint)(["I am not sure about refunds."])
    communicator, conversation = await chat()
    await _ask(communicator, "Can I get a refund for a double charge?")
    await _frames_until(communicator, {"end", "error"})
    turn = await Turn.objects.aget(conversation=conversation)
    escalation = await sync_to_async(services.escalation_create)(
        turn=turn, user=alice, reason="Refund question"
    )

    # A reviewer claims it, then replies, from another process's point of view: only the
    # Channels layer connects the two.
    await sync_to_async(services.escalation_claim)(escalation=escalation, user=rita)
    claimed = await communicator.receive_from(timeout=TIMEOUT)
    assert _kind(claimed) == "escalation" and f'id="escalate-{turn.pk}"' in claimed
    assert "Rita Reviewer is on it" in claimed

    await sync_to_async(services.escalation_answer)(
        escalation=escalation, user=rita, text="Yes: <b>refunded</b> today.\nCheck your statement."
    )
    replied = await communicator.receive_from(timeout=TIMEOUT)
    assert _kind(replied) == "escalation" and 'hx-swap-oob="true"' in replied
    assert "Rita Reviewer replied" in replied
    assert "Yes: &lt;b&gt;refunded&lt;/b&gt; today.<br>Check your statement." in replied
    assert "<b>refunded</b>" not in replied, "a person's reply is escaped like any other text"


async def test_it_sends_no_reply_of_another_conversation(alice, rita, fake_endpoint, chat) -> None:
    await sync_to_async(fake_endpoint)(["An answer."])
    other, other_conversation = await chat()
    await _ask(other, "First question")
    await _frames_until(other, {"end", "error"})
    mine, _ = await chat()
    turn = await Turn.objects.aget(conversation=other_conversation)
    escalation = await sync_to_async(services.escalation_create)(turn=turn, user=alice)

    await sync_to_async(services.escalation_answer)(escalation=escalation, user=rita, text="Hi")
    assert "Hi" in await other.receive_from(timeout=TIMEOUT)
    assert await mine.receive_nothing(timeout=0.5)


async def test_it_shows_tool_calls_as_they_happen_escaped(alice, fake_endpoint, chat) -> None:
    """The agent's tool call appears above the answer when it starts, is replaced by its outcome
    when it ends, and stays in the final answer; model-written arguments are escaped."""
    from chatbot.agent.tools.access import tools_ensure
    from chatbot.models import ModelEndpoint, ToolSetting

    def setup() -> None:
        tools_ensure()
        ToolSetting.objects.filter(name="draft").update(enabled=True, roles=["agent"])
        endpoint = fake_endpoint(["Here it is [1]."], tool_calling=ModelEndpoint.ToolCalling.NATIVE)
        args = {"template": "refund_reply", "fields": {"name": "<b>Mia</b>", "amount": "5 EUR"}}
        endpoint.options["tool_calls"] = [[{"name": "draft", "args": args}]]
        endpoint.save()

    await sync_to_async(setup)()
    communicator, _ = await chat()

    await _ask(communicator, "Draft a refund reply to Mia")
    frames = await _frames_until(communicator, {"end", "error"})

    tools = [f for f in frames if _kind(f) == "tool"]
    assert len(tools) == 2
    started, ended = tools
    turn = await Turn.objects.alatest("pk")
    assert started.startswith(f'<div id="answer-{turn.pk}-steps" hx-swap-oob="beforeend"')
    assert "running…" in started
    assert 'hx-swap-oob="true"' in ended and "done" in ended
    assert "<b>Mia</b>" not in ended and "&lt;b&gt;Mia&lt;/b&gt;" in ended
    assert "Still to fill: days" in ended
    end = frames[-1]
    assert _kind(end) == "end"
    assert 'class="tool-call status-done"' in end and 'href="#tool-' in end
    assert frames.index(tools[1]) < next(i for i, f in enumerate(frames) if _kind(f) == "token")
