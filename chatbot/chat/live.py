"""News for open conversation pages, over the Channels layer (Redis): each chat socket joins its
conversation's group, so a message sent from any process (a reviewer's request on another daphne,
a Celery worker) reaches the page wherever its socket is held."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)


def conversation_group(conversation_id: int) -> str:
    return f"conversation-{conversation_id}"


def escalation_changed(conversation_id: int, turn_id: int) -> None:
    """Tell the conversation's open pages that a turn's escalation changed (claimed, answered,
    resolved); each re-renders it. Best effort: the change is saved, and a page opened later reads
    it from the database, so a Redis hiccup is logged, not raised."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(
            conversation_group(conversation_id), {"type": "escalation.changed", "turn_id": turn_id}
        )
    except Exception:
        logger.exception("telling conversation %s about turn %s failed", conversation_id, turn_id)
