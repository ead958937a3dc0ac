from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async

from chatbot.agent.turn import turn_run
from chatbot.chat import services
from chatbot.models import ModelEndpoint, Span, Turn

pytestmark = pytest.mark.django_db(transaction=True)


async def _new_turn(user, text: str = "How long is the reset link valid?") -> Turn:
    conversation = await sync_to_async(services.conversation_create)(owner=user)
    return await sync_to_async(services.turn_create)(conversation=conversation, user_text=text)


async def test_it_streams_the_answer_and_records_the_turn(alice, fake_endpoint) -> None:
    endpoint = await sync_to_async(fake_endpoint)(["The link expires after 30 minutes."])
    turn = await _new_turn(alice)
    pieces: list[str] = []

    async def emit(text: str) -> None:
        pieces.append(text)

    outcome = await turn_run(turn_id=turn.pk, emit=emit)

    assert outcome.status == "done"
    assert "".join(pieces) == "The link expires after 30 minutes."
    assert len(pieces) > 1, "the answer arrives in pieces, not at once"
    saved = await Turn.objects.aget(pk=turn.pk)
    assert saved.status == Turn.Status.DONE
    assert saved.answer == "The link expires after 30 minutes."
    assert saved.endpoint_id == endpoint.pk
    assert saved.route_reason == "catalogue default"
    assert saved.tokens_in > 0 and saved.tokens_out > 0 and saved.tokens_estimated
    expected = (Decimal(saved.tokens_in) * 1 + Decimal(saved.tokens_out) * 2) / Decimal(1_000_000)
    assert saved.cost == expected
    assert saved.ttft_ms is not None and saved.total_ms is not None
    assert saved.ttft_ms <= saved.total_ms
    spans = [s async for s in Span.objects.filter(turn=saved).order_by("started_at")]
    assert [s.kind for s in spans] == ["agent", "llm"]
    root, llm = spans
    assert llm.parent_id == root.id
    assert llm.tokens_out == saved.tokens_out and llm.cost == saved.cost
    assert "ttft_ms" in llm.attributes


async def test_it_records_a_model_error_in_plain_words(alice, fake_endpoint) -> None:
    await sync_to_async(fake_endpoint)(["abcdefgh"], error_on_chunk=3)
    turn = await _new_turn(alice)

    async def emit(text: str) -> None:
        pass

    outcome = await turn_run(turn_id=turn.pk, emit=emit)

    assert outcome.status == "failed"
    saved = await Turn.objects.aget(pk=turn.pk)
    assert saved.status == Turn.Status.FAILED
    assert saved.answer == "abc", "what streamed before the failure is kept"
    assert "failed to answer" in saved.error
    root = await Span.objects.aget(turn=saved, kind="agent")
    assert "FakeListChatModelError" in root.attributes["error_detail"]


async def test_it_keeps_the_partial_answer_when_cancelled(alice, fake_endpoint) -> None:
    await sync_to_async(fake_endpoint)(["x" * 200], sleep=0.01)
    turn = await _new_turn(alice)
    received: list[str] = []

    async def emit(text: str) -> None:
        received.append(text)

    task = asyncio.create_task(turn_run(turn_id=turn.pk, emit=emit))
    while len(received) < 5:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    saved = await Turn.objects.aget(pk=turn.pk)
    assert saved.status == Turn.Status.CANCELLED
    assert 5 <= len(saved.answer) < 200
    assert saved.answer == "".join(received)


async def test_it_fails_clearly_when_no_model_is_enabled(alice) -> None:
    await ModelEndpoint.objects.all().aupdate(enabled=False)
    turn = await _new_turn(alice)

    async def emit(text: str) -> None:
        pass

    outcome = await turn_run(turn_id=turn.pk, emit=emit)
    assert outcome.status == "failed"
    assert "No model is available" in outcome.error


async def test_it_reports_an_unreachable_model_server(alice, fake_endpoint) -> None:
    # A real OpenAI-compatible client pointed at a closed port: the network edge fails for real.
    await sync_to_async(ModelEndpoint.objects.create)(
        name="down",
        provider="openai",
        base_url="http://127.0.0.1:9/v1",
        model_id="m",
        style="completion",
        is_default=False,
    )
    turn = await _new_turn(alice)

    async def emit(text: str) -> None:
        pass

    outcome = await turn_run(turn_id=turn.pk, emit=emit, requested_model="down")
    assert outcome.status == "failed"
    assert "could not be reached" in outcome.error


def test_it_reads_three_times_before_calling_the_model_without_grounding(
    alice, fake_endpoint, django_assert_num_queries
) -> None:
    """Everything before the model call is on the time-to-first-token path: prompt, assistant
    settings, route (grounded turns add retrieval: see tests/agent/test_grounded.py)."""
    from chatbot.agent.turn import _prepare
    from chatbot.telemetry.tracing import Tracer

    fake_endpoint()
    conversation = services.conversation_create(owner=alice)
    for n in range(3):
        done = services.turn_create(conversation=conversation, user_text=f"earlier {n}")
        Turn.objects.filter(pk=done.pk).update(status=Turn.Status.DONE, answer=f"answer {n}")
    turn = services.turn_create(conversation=conversation, user_text="now")
    with django_assert_num_queries(3):
        prepared = _prepare(turn.pk, None, None, Tracer())
    route, prompt = prepared.route, prepared.prompt
    assert route is not None and route.endpoint.name == "fake-model"
    assert prompt.question == "now" and len(prompt.messages) == 1 + 2 * 3 + 1
