"""The Channels layer over real Redis: the path several daphne processes use to reach each other."""

from __future__ import annotations

import asyncio

from channels.layers import get_channel_layer


async def test_it_delivers_a_group_message_after_an_idle_wait() -> None:
    layer = get_channel_layer()
    assert layer is not None
    channel = await layer.new_channel()
    await layer.group_add("turn-probe", channel)

    async def send_later() -> None:
        # Longer than redis-py's default 5 s socket timeout: an idle receiver must survive it.
        await asyncio.sleep(6)
        await layer.group_send("turn-probe", {"type": "turn.stop", "turn_id": 7})

    sender = asyncio.create_task(send_later())
    message = await asyncio.wait_for(layer.receive(channel), timeout=30)
    await sender
    await layer.group_discard("turn-probe", channel)
    assert message == {"type": "turn.stop", "turn_id": 7}
