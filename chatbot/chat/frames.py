"""The HTML fragments the chat websocket sends; see `ChatConsumer` for the protocol.

Start and end frames are rendered from the same templates as the page, so a streamed answer and
a reloaded one look the same. Token frames are built by string concatenation: they are the hot
path (one per model chunk), so no template and no database touch them.
"""

from __future__ import annotations

from html import escape

from django.contrib.auth.models import AnonymousUser, User
from django.template.loader import render_to_string
from django.utils.html import format_html

from chatbot.agent.loop import StepEvent
from chatbot.chat import selectors, services
from chatbot.chat.tool_calls import ToolCallView
from chatbot.models import Conversation, Turn

FRAME_END = "</span>"


def token_prefix(turn_id: int) -> str:
    """Computed once per turn; each token frame is then prefix + escaped text + suffix."""
    return f'<span id="answer-{turn_id}-text" hx-swap-oob="beforeend" data-frame="token">'


def token_frame(prefix: str, text: str) -> str:
    # Element content only: escaping &, < and > is enough, and quote=False keeps frames short.
    return prefix + escape(text, quote=False) + FRAME_END


def input_error_frame(message: str) -> str:
    """A problem with what the person sent; shown above the input, the thread is untouched."""
    return str(
        format_html(
            '<div id="composer-error" class="composer-error" role="alert" '
            'hx-swap-oob="true" data-frame="error">{}</div>',
            message,
        )
    )


def turn_start(user: User | AnonymousUser, conversation_id: int, text: object) -> tuple[Turn, str]:
    """Save the question (raising InvalidInput for bad text) and render its start frame.

    The conversation is looked up again so a conversation deleted in another tab since the
    socket opened raises Conversation.DoesNotExist instead of failing on a foreign key.
    """
    conversation: Conversation = selectors.conversation_get_for(user, conversation_id)
    turn = services.turn_create(conversation=conversation, user_text=text)
    html = render_to_string(
        "chat/_frame_start.html", {"turn": turn, "conversation": conversation, "live": True}
    )
    return turn, html


def answer_frame(user: User | AnonymousUser, turn_id: int, frame: str) -> str:
    """The finished answer (done, failed or stopped) as saved, replacing the streaming bubble;
    when it used the knowledge base, the sources panel switches to its passages."""
    turn = selectors.turn_with_sources(selectors.turn_get_for(user, turn_id))
    html: str = render_to_string("chat/_answer.html", {"turn": turn, "frame": frame})
    if turn.citations.all():
        panel = render_to_string("chat/_sources.html", {"sources_turn": turn})
        html += f'<div id="sources-panel" hx-swap-oob="true">{panel}</div>'
    return html


def escalation_frame(user: User | AnonymousUser, turn_id: int) -> str:
    """A turn's escalation as it is now (claimed, answered with the human's reply, resolved),
    replacing its block under the answer; "" when the turn is not the person's to see."""
    try:
        turn = selectors.turn_get_for(user, turn_id)
    except Turn.DoesNotExist:
        return ""
    escalation = selectors.escalation_of(turn)
    return render_to_string(
        "chat/_escalate.html", {"turn": turn, "escalation": escalation, "oob": True}
    )


def step_frame(turn_id: int, event: StepEvent, *, first: bool) -> str:
    """A tool call as it starts (its block appended above the streaming answer) or ends (its
    block replaced). `first` is whether the page has no block for this call yet: a call refused
    before it ran has only one event. No database: the event carries all it shows."""
    call = ToolCallView.from_event(event)
    if first:
        block = render_to_string("chat/_tool_call.html", {"call": call})
        return (
            f'<div id="answer-{turn_id}-steps" hx-swap-oob="beforeend" data-frame="tool">'
            f"{block}</div>"
        )
    return render_to_string("chat/_tool_call.html", {"call": call, "oob": True})
