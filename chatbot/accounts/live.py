"""News about a person's account for their open chat sockets, over the Channels layer (Redis):
each socket joins its person's group, so an admin's change (a role taken away, the account
deactivated) made on any process reaches every tab the person has open, wherever it is held."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)


def account_group(user_id: int) -> str:
    return f"account-{user_id}"


def account_changed(user_id: int) -> None:
    """Tell the person's open sockets to read their account again. Best effort: every question is
    checked against the database anyway, so a Redis hiccup only delays the refusal until the next
    question; it is logged, not raised."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(account_group(user_id), {"type": "account.changed"})
    except Exception:
        logger.exception("telling the sockets of user %s about their account failed", user_id)
