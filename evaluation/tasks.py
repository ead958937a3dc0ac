"""Background judging. One task per turn fans out one task per (turn, judge version), so a slow or
failing LLM judge retries on its own without running the cheap judges again. Tasks take ids and
are safe to run twice (a turn already scored by a judge version is skipped)."""

from __future__ import annotations

from celery import shared_task

from evaluation import selectors, services
from evaluation.review.flagging import turn_flag_quietly

JUDGE_ATTEMPTS = 3


@shared_task(name="evaluation.judge_turn")
def judge_turn_task(turn_id: int) -> list[str]:
    """Queue every active judge for a finished turn; returns the queued task ids."""
    # Rules that need no judge (no answer, the calibration sample) flag the turn straight away.
    turn_flag_quietly(turn_id)
    ids = list(selectors.judges_active().values_list("pk", flat=True))
    return [judge_run_task.delay(turn_id, judge_id).id for judge_id in ids]


@shared_task(
    name="evaluation.judge_run",
    autoretry_for=(services.JudgeFailed,),
    max_retries=JUDGE_ATTEMPTS - 1,
    retry_backoff=2,
    retry_backoff_max=120,
    retry_jitter=True,
)
def judge_run_task(turn_id: int, judge_id: int) -> str:
    score = services.judge_run(turn_id=turn_id, judge_id=judge_id)
    if score is not None and score.passed is False:
        turn_flag_quietly(turn_id)
    services.turn_judged(turn_id=turn_id)
    return "skipped" if score is None else score.status


@shared_task(name="evaluation.turns_rejudge")
def turns_rejudge_task(days: int) -> int:
    """Judge again what the current judge versions have not scored in the last `days` days."""
    return services.turns_rejudge(days=days)


@shared_task(name="evaluation.turns_judge_sweep")
def turns_judge_sweep_task() -> int:
    """Catch finished turns whose judging was never queued (runs every few minutes in beat)."""
    return services.turns_judge_sweep()


@shared_task(name="evaluation.judge_trust_refresh")
def judge_trust_refresh_task() -> dict[str, str]:
    """Store every judge's agreement with the humans where flagging reads it: after each review
    and every few minutes in beat. Safe to run twice (it recomputes from all reviews)."""
    from evaluation.review.agreement import judge_trust_refresh

    return {trust.name: trust.state for trust in judge_trust_refresh()}
