"""What the caller of /v1/chat/completions sent is part of the turn's trace."""

from __future__ import annotations

import openai
import pytest
from asgiref.sync import sync_to_async

from chatbot.models import Span, Turn

pytestmark = pytest.mark.django_db(transaction=True)


async def test_it_records_the_callers_own_system_prompt_in_the_trace(
    alice, alice_key, asgi_client, fake_endpoint
) -> None:
    await sync_to_async(fake_endpoint)(["Restart the client."])
    client = openai.AsyncOpenAI(
        base_url="http://testserver/v1", api_key=alice_key, http_client=asgi_client()
    )
    try:
        await client.chat.completions.create(
            model="default",
            messages=[
                {"role": "system", "content": "Answer as a pirate would."},
                {"role": "user", "content": "The VPN drops. What now?"},
            ],
        )
    finally:
        await client.close()

    turn = await Turn.objects.aget(conversation__owner=alice)
    root = await Span.objects.aget(turn=turn, kind="agent", parent__isnull=True)
    assert root.attributes["system_prompt"] == "Answer as a pirate would."
