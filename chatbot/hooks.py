"""Hooks: how a lower layer tells a higher one that something happened, without importing it.

Chat and the agent fire these; evaluation (judges, the review queue) registers receivers in its
`AppConfig.ready`. A hook is sent after the surrounding transaction commits, so receivers never see
a row that was rolled back, and `send_robust` keeps a failing receiver from reaching the person
who chatted, rated or escalated (the failure is logged).
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger(__name__)

# A turn was saved with its outcome. Arguments: turn_id, status.
turn_finished = Signal()
# Someone rated an answer. Arguments: turn_id, rating (1 or -1).
feedback_given = Signal()
# Someone asked for a human on an answer. Arguments: turn_id.
escalation_requested = Signal()
# The weekly report (observability.weekly) asks for sections other features own; each receiver
# returns a dict merged into the report's figures (evaluation: the judges' agreement with humans).
# Arguments: week_start, week_end (dates). Sent directly, not on commit: its answers are needed.
weekly_report_sections = Signal()


def fire_on_commit(signal: Signal, **arguments: object) -> None:
    def send() -> None:
        for receiver, outcome in signal.send_robust(sender=None, **arguments):
            if isinstance(outcome, Exception):
                logger.error(
                    "hook receiver %s failed: %s",
                    getattr(receiver, "__qualname__", receiver),
                    outcome,
                    exc_info=outcome,
                )

    transaction.on_commit(send, robust=True)
