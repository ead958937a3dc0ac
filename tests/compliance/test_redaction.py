"""Personal data replaced by placeholders before it leaves for an endpoint that may not see it, and
put back in the answer the person reads. The endpoints are fake HTTP peers speaking OpenAI's wire
format, so "never reaches it" means the peer's recorded request bodies do not contain the value."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User

from chatbot.agent.turn import turn_run
from chatbot.chat import services
from chatbot.compliance.redact import Placeholders, redacted_summary
from chatbot.models import ModelEndpoint, PiiPattern, Span, Turn
from tests.fake_peers import fake_peer, sse

pytestmark = pytest.mark.django_db(transaction=True)

EMAIL = "jane.doe@example.com"
PHONE = "+1 415 555 0132"
QUESTION = f"Jane ({EMAIL}, {PHONE}) cannot log in. Should I mail {EMAIL} the reset link?"


def _streaming(pieces: list[str]) -> Callable[[str, dict[str, Any]], tuple[int, list[bytes], str]]:
    """An OpenAI-compatible server streaming exactly these pieces."""

    def handler(path: str, body: dict[str, Any]) -> tuple[int, list[bytes], str]:
        head = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        events: list[tuple[str | None, dict[str, Any] | str]] = [
            (None, chunk({"role": "assistant", "content": ""})),
            *((None, chunk({"content": p})) for p in pieces),
            (None, chunk({}, "stop")),
            (None, "[DONE]"),
        ]
        return 200, sse(events), "text/event-stream"

    return handler


def _peer_model(url: str, *, allowed: bool) -> ModelEndpoint:
    ModelEndpoint.objects.filter(is_default=True).update(is_default=False)
    return ModelEndpoint.objects.create(
        name="hosted" if not allowed else "on-premises",
        provider=ModelEndpoint.Provider.OPENAI,
        base_url=f"{url}/v1",
        model_id="m",
        style=ModelEndpoint.Style.CHAT,
        is_default=True,
        region="us",
        personal_data_allowed=allowed,
    )


async def _ask(user: User, text: str) -> tuple[int, str]:
    conversation = await sync_to_async(services.conversation_create)(owner=user)
    turn = await sync_to_async(services.turn_create)(conversation=conversation, user_text=text)
    pieces: list[str] = []

    async def emit(piece: str) -> None:
        pieces.append(piece)

    outcome = await turn_run(turn_id=turn.pk, emit=emit)
    return outcome.turn_id, "".join(pieces)


def _sent(seen: list[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(request["body"]) for request in seen)


# --- the mapping itself -------------------------------------------------------------------------


def test_the_same_value_is_the_same_placeholder_within_a_turn() -> None:
    placeholders = Placeholders()
    first = placeholders.hide(f"Write to {EMAIL} or bob@example.org.")
    second = placeholders.hide(f"Did {EMAIL} answer?")

    assert first == "Write to <EMAIL_ADDRESS_1> or <EMAIL_ADDRESS_2>."
    assert second == "Did <EMAIL_ADDRESS_1> answer?"
    assert placeholders.redacted == {"EMAIL_ADDRESS": 2}
    assert placeholders.reveal("Mail <EMAIL_ADDRESS_2>, not <EMAIL_ADDRESS_9>.") == (
        "Mail bob@example.org, not <EMAIL_ADDRESS_9>."
    ), "an unknown placeholder is left as the model wrote it"


def test_a_placeholder_split_across_streamed_pieces_is_restored() -> None:
    placeholders = Placeholders()
    placeholders.hide(f"My address is {EMAIL}.")
    restorer = placeholders.restorer()

    out = [restorer.feed(p) for p in ["Send it to <EMAIL", "_ADD", "RESS_1> today", ", a < b <"]]
    out.append(restorer.flush())

    assert "".join(out) == f"Send it to {EMAIL} today, a < b <"
    assert out[1] == "", "a possible placeholder is held back, not shown half-written"


def test_the_note_says_what_was_replaced_in_words() -> None:
    assert redacted_summary({"EMAIL_ADDRESS": 1, "PHONE_NUMBER": 2}) == (
        "1 email address, 2 phone numbers"
    )


# --- real turns against fake peers --------------------------------------------------------------


async def test_a_hosted_endpoint_gets_placeholders_and_the_person_reads_the_values(alice) -> None:
    # The peer echoes the placeholders, one of them split across two pieces of the stream.
    answer = ["I will mail <EMAIL", "_ADDRESS_1> and call <PHONE_NUMBER_1>."]
    with fake_peer(_streaming(answer)) as (url, seen):
        await sync_to_async(_peer_model)(url, allowed=False)
        turn_id, shown = await _ask(alice, QUESTION)

    sent = _sent(seen)
    assert seen, "the hosted model was asked"
    assert EMAIL not in sent and "415 555 0132" not in sent
    assert "<EMAIL_ADDRESS_1>" in sent and "<PHONE_NUMBER_1>" in sent
    assert shown == f"I will mail {EMAIL} and call {PHONE}."

    turn = await Turn.objects.aget(pk=turn_id)
    assert turn.status == Turn.Status.DONE
    assert turn.answer == shown, "the saved answer has the values back"
    assert turn.redacted == {"EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1}

    spans = [s async for s in Span.objects.filter(turn_id=turn_id)]
    [llm] = [s for s in spans if s.kind == "llm"]
    assert llm.attributes["redacted"] == {"EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1}
    recorded = json.dumps([s.attributes for s in spans])
    assert EMAIL not in recorded and "415 555 0132" not in recorded, "tags only, never values"


async def test_an_endpoint_allowed_personal_data_gets_the_text_as_written(alice) -> None:
    with fake_peer(_streaming(["Done."])) as (url, seen):
        await sync_to_async(_peer_model)(url, allowed=True)
        turn_id, shown = await _ask(alice, QUESTION)

    assert EMAIL in _sent(seen) and "<EMAIL_ADDRESS" not in _sent(seen)
    assert shown == "Done."
    turn = await Turn.objects.aget(pk=turn_id)
    assert turn.redacted == {}
    spans = [s async for s in Span.objects.filter(turn_id=turn_id, kind="llm")]
    assert all("redacted" not in s.attributes for s in spans)


async def test_an_admins_pattern_is_replaced_before_it_leaves(alice) -> None:
    await PiiPattern.objects.acreate(entity="EMPLOYEE_ID", regex=r"EMP-\d{6}")
    with fake_peer(_streaming(["Unlocked <EMPLOYEE_ID_1>."])) as (url, seen):
        await sync_to_async(_peer_model)(url, allowed=False)
        turn_id, shown = await _ask(alice, "Please unlock EMP-123456.")

    assert "EMP-123456" not in _sent(seen) and "<EMPLOYEE_ID_1>" in _sent(seen)
    assert shown == "Unlocked EMP-123456."
    turn = await Turn.objects.aget(pk=turn_id)
    assert turn.redacted == {"EMPLOYEE_ID": 1}
