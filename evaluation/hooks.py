"""Evaluation reacts to what chat and the agent report (`chatbot.hooks`): a finished answer is
judged in the background, and a thumbs down or a request for a human puts the turn in the review
queue. Connected in `EvaluationConfig.ready`; the hooks arrive after the commit."""

from __future__ import annotations

import logging

from chatbot.agent.cache import answer_cache_retire_turns
from chatbot.models import Feedback, Turn

logger = logging.getLogger(__name__)


def on_turn_finished(*, turn_id: int, status: str, **_: object) -> None:
    if status != Turn.Status.DONE:
        return
    from evaluation.tasks import judge_turn_task

    try:
        judge_turn_task.delay(turn_id)
    except Exception:
        # The judge sweep (every few minutes) picks the turn up once the broker is back.
        logger.exception("could not queue judging of turn %s; the sweep will catch it", turn_id)


def on_feedback_given(*, turn_id: int, rating: int, **_: object) -> None:
    if rating == Feedback.Rating.DOWN:
        from evaluation.review.flagging import turn_flag_quietly

        turn_flag_quietly(turn_id)
        answer_cache_retire_turns(turn_ids=[turn_id], reason="thumbed down")


def on_escalation_requested(*, turn_id: int, **_: object) -> None:
    from evaluation.review.flagging import turn_flag_quietly

    turn_flag_quietly(turn_id)
    answer_cache_retire_turns(turn_ids=[turn_id], reason="handed to a human")


def weekly_report_judges(**_: object) -> dict[str, object]:
    """The weekly report's judge table (observability.weekly): each judge's agreement with the
    human reviews, computed now from all of them."""
    from evaluation.review.agreement import judge_trust_all

    return {
        "judges": [
            {
                "name": trust.name,
                "kind": trust.kind,
                "kappa": trust.kappa,
                "pairs": trust.pairs,
                "state": trust.state,
                "state_label": trust.state_label,
                "note": trust.note,
            }
            for trust in judge_trust_all()
        ]
    }
