"""Writes for judges and their scores: seeding, new versions, and running one judge on one turn."""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from chatbot.agent.cache import answer_cache_retire_turns, answer_cache_store
from chatbot.models import Judge, JudgeScore, Span, Turn
from chatbot.telemetry.audit import audit_changes, audit_record
from chatbot.telemetry.tracing import Tracer, spans_save
from evaluation import judges, selectors
from evaluation.judge_models import judge_model
from evaluation.judges import JudgeCase, JudgeError, JudgeSpec, Skip, Verdict
from evaluation.policies import policies_for_judging

logger = logging.getLogger(__name__)


class InvalidJudge(ValueError):
    """A judge edit that cannot be saved; the message is shown to the admin as it is."""


class JudgeFailed(Exception):
    """A judge run failed and its failure was recorded; the task retries on it."""


BUILT_IN: list[dict[str, Any]] = [
    {"name": "toxicity", "kind": Judge.Kind.TOXICITY, "threshold": 0.5},
    {"name": "pii", "kind": Judge.Kind.PII, "threshold": 1.0},
    {"name": "format", "kind": Judge.Kind.FORMAT, "threshold": 1.0,
     "options": {"max_chars": judges.DEFAULT_MAX_CHARS}},
    {"name": "faithfulness-overlap", "kind": Judge.Kind.FAITHFULNESS_OVERLAP, "threshold": 0.5,
     "options": {"min_word_share": judges.DEFAULT_MIN_WORD_SHARE}},
    # The LLM judges start switched off: the local default model is a small base model that
    # cannot grade. An admin turns them on once they point at a capable judge model.
    {"name": "faithfulness-llm", "kind": Judge.Kind.FAITHFULNESS_LLM, "threshold": 0.5,
     "prompt_template": judges.FAITHFULNESS_PROMPT, "enabled": False},
    {"name": "relevance-llm", "kind": Judge.Kind.RELEVANCE_LLM, "threshold": 0.5,
     "prompt_template": judges.RELEVANCE_PROMPT, "enabled": False},
    # Skips every turn until a reward model has been trained (review area, exports).
    {"name": "reward-model", "kind": Judge.Kind.REWARD_MODEL, "threshold": 0.5},
    # Off for the same reason as the LLM judges above; the policy judge also skips every turn
    # until an admin writes a policy (Console → Judges → Policies).
    {"name": "policy-llm", "kind": Judge.Kind.POLICY_LLM, "threshold": 1.0,
     "prompt_template": judges.POLICY_PROMPT, "enabled": False},
    {"name": "helpfulness-llm", "kind": Judge.Kind.HELPFULNESS_LLM, "threshold": 0.5,
     "prompt_template": judges.HELPFULNESS_PROMPT, "enabled": False},
    {"name": "readability-llm", "kind": Judge.Kind.READABILITY_LLM, "threshold": 0.5,
     "prompt_template": judges.READABILITY_PROMPT, "enabled": False},
]  # fmt: skip


def judges_ensure() -> list[Judge]:
    """Create the built-in judges once (version 1); an admin's later versions are kept."""
    for definition in BUILT_IN:
        fields = dict(definition)
        name = fields.pop("name")
        if not Judge.objects.filter(name=name).exists():
            Judge.objects.get_or_create(name=name, version=1, defaults=fields)
    names = [d["name"] for d in BUILT_IN]
    latest = Judge.objects.filter(name__in=names).values("name").annotate(v=Max("version"))
    wanted = [(row["name"], row["v"]) for row in latest]
    return sorted(
        (j for j in Judge.objects.filter(name__in=names) if (j.name, j.version) in wanted),
        key=lambda j: j.name,
    )


EDITABLE = ("endpoint", "prompt_template", "scale", "threshold", "options", "enabled")


@transaction.atomic
def judge_new_version(*, judge: Judge, **changes: Any) -> Judge:
    """Save an edit as the next version of the judge. Scores made by earlier versions keep
    pointing at them; when the new version is enabled, the earlier ones stop running."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise InvalidJudge(f"These judge fields cannot be changed: {', '.join(sorted(unknown))}.")
    # Lock the judge's rows so two admins editing at once get consecutive versions.
    versions = list(Judge.objects.select_for_update().filter(name=judge.name))
    latest = max(versions, key=lambda j: j.version)
    fields = {f: getattr(latest, f) for f in EDITABLE}
    fields.update(changes)
    new = Judge(name=judge.name, version=latest.version + 1, kind=latest.kind, **fields)
    _validate(new)
    new.save()
    if new.enabled:
        Judge.objects.filter(name=judge.name).exclude(pk=new.pk).update(enabled=False)
    before = {f: getattr(latest, f) for f in EDITABLE}
    after = {f: getattr(new, f) for f in EDITABLE}
    audit_record(
        "judge.save",
        target=new,
        details={"version": new.version, "changed": audit_changes(before, after)},
    )
    return new


def _validate(judge: Judge) -> None:
    if not 0 <= judge.threshold <= 1:
        raise InvalidJudge("The threshold must be between 0 and 1 (scores run from 0 to 1).")
    if not isinstance(judge.options, dict):
        raise InvalidJudge("The options must be a JSON object.")
    if judge.is_llm and judge.prompt_template:
        try:
            judges.render_judge_prompt(judge.prompt_template, JudgeCase(question="", answer=""))
        except JudgeError as exc:
            raise InvalidJudge(str(exc)) from exc


def judge_spec(judge: Judge) -> JudgeSpec:
    """The judge row as the ORM-free spec `judges.judge_apply` takes (turns and experiments
    alike). Raises `JudgeError` when its model is missing for the moment; a model unable to
    grade gives a spec whose `needs_model` says so (the judge then skips)."""
    model = judge_model(judge)
    if model is not None and model.error:
        raise JudgeError(model.error)
    return JudgeSpec(
        name=judge.name,
        kind=judge.kind,
        options=dict(judge.options or {}),
        prompt_template=judge.prompt_template,
        endpoint=model.endpoint if model is not None else None,
        needs_model=model.needs if model is not None else "",
        policies=policies_for_judging() if judge.kind == Judge.Kind.POLICY_LLM else (),
    )


def _apply(judge: Judge, case: JudgeCase) -> Verdict | Skip:
    return judges.judge_apply(judge_spec(judge), case)


def judge_run(*, turn_id: int, judge_id: int) -> JudgeScore | None:
    """Run one judge version on one finished turn and store its score and span.

    Safe to run twice: a turn already scored by this version is left as it is. Returns None when
    the judge does not apply (a span records why). A failure is recorded on the score row (status
    failed, error, attempts) and then raised as `JudgeFailed` so the task can retry.
    """
    turn = Turn.objects.filter(pk=turn_id, status=Turn.Status.DONE).first()
    judge = Judge.objects.select_related("endpoint").filter(pk=judge_id).first()
    if turn is None or judge is None:
        return None
    existing = JudgeScore.objects.filter(turn=turn, judge=judge).first()
    if existing is not None and existing.status == JudgeScore.Status.DONE:
        return existing

    case = selectors.judge_case(turn=turn)
    tracer = Tracer()
    outcome: Verdict | Skip | None = None
    error = ""
    name = f"judge {judge.name} v{judge.version}"
    attributes = {"judge": judge.name, "version": judge.version, "judge_kind": judge.kind}
    with tracer.span(Span.Kind.JUDGE, name, **attributes) as span:
        try:
            outcome = _apply(judge, case)
        except JudgeError as exc:
            error = str(exc)
        except Exception as exc:
            # A bug in a judge is a failed score, never an exception that reaches the chat.
            logger.exception("judge %s failed on turn %s", judge, turn_id)
            error = f"The judge failed unexpectedly ({type(exc).__name__}: {exc})."
        if isinstance(outcome, Verdict):
            span.tokens_in = outcome.usage.input_tokens
            span.tokens_out = outcome.usage.output_tokens
            span.cost = outcome.cost
            span.attributes.update(score=round(outcome.score, 4), status="done")
        elif isinstance(outcome, Skip):
            span.attributes.update(skipped=outcome.reason)
        else:
            span.error = error
            span.attributes.update(status="failed")

    score = _record(turn=turn, judge=judge, outcome=outcome, error=error, tracer=tracer)
    if score is not None and score.status == JudgeScore.Status.FAILED:
        raise JudgeFailed(f"{judge} on turn {turn_id}: {error}")
    return score


@transaction.atomic
def _record(
    *, turn: Turn, judge: Judge, outcome: Verdict | Skip | None, error: str, tracer: Tracer
) -> JudgeScore | None:
    spans_save(turn_id=turn.pk, tracer=tracer)
    if isinstance(outcome, Skip):
        return None
    span = tracer.records[0]
    score, _ = JudgeScore.objects.select_for_update().get_or_create(
        turn=turn, judge=judge, defaults={"status": JudgeScore.Status.FAILED}
    )
    score.attempts += 1
    score.duration_ms = span.duration_ms
    score.tokens_in = span.tokens_in
    score.tokens_out = span.tokens_out
    score.cost = span.cost
    if isinstance(outcome, Verdict):
        score.status = JudgeScore.Status.DONE
        score.score = outcome.score
        score.passed = outcome.score >= judge.threshold
        score.details = outcome.details
        score.error = ""
    else:
        score.status = JudgeScore.Status.FAILED
        score.score = None
        score.passed = None
        score.details = {}
        score.error = error
    score.save()
    return score


def turn_judged(*, turn_id: int) -> None:
    """After each judge's run on a turn: once every enabled judge has passed it, its answer may
    serve the same question again (the answer cache decides whether the turn qualifies); an
    answer from the cache that a judge fails takes its entry out."""
    verdict = selectors.turn_judges_verdict(turn_id=turn_id)
    if verdict is True:
        answer_cache_store(turn_id=turn_id)
    elif verdict is False:
        answer_cache_retire_turns(turn_ids=[turn_id], reason="a judge failed the answer")


# --- judging turns again -------------------------------------------------------------------------

REJUDGE_MAX_DAYS = 90
JUDGE_BATCH_MAX_TURNS = 5000  # turns queued by one re-judge or sweep; the next one takes the rest
SWEEP_WINDOW = timedelta(days=1)
# Turns finished this recently are still being judged by the task turn_finish queued.
SWEEP_GRACE = timedelta(minutes=5)


@transaction.atomic
def judge_set_enabled(*, judge: Judge, enabled: bool) -> Judge:
    """Switch one judge version on or off; on, it replaces any other version of the same judge."""
    # Lock the judge's versions so two admins switching at once leave one version running.
    list(Judge.objects.select_for_update().filter(name=judge.name).values_list("pk", flat=True))
    if enabled:
        Judge.objects.filter(name=judge.name).exclude(pk=judge.pk).update(enabled=False)
    Judge.objects.filter(pk=judge.pk).update(enabled=enabled)
    judge.enabled = enabled
    audit_record("judge.enable", target=judge, details={"enabled": enabled})
    return judge


def _queue_judging(turn_ids: list[int]) -> None:
    from evaluation.tasks import judge_turn_task

    for turn_id in turn_ids:
        transaction.on_commit(partial(judge_turn_task.delay, turn_id), robust=True)


def turns_rejudge_queue(*, days: object) -> int:
    """Validate an admin's re-judge request and start it in the background."""
    try:
        value = int(str(days))
    except ValueError:
        raise InvalidJudge("Give the number of days as a whole number.") from None
    if not 1 <= value <= REJUDGE_MAX_DAYS:
        raise InvalidJudge(f"Re-judge between 1 and {REJUDGE_MAX_DAYS} days of turns.")
    from chatbot.jobs import job_submit_on_commit
    from evaluation.tasks import turns_rejudge_task

    job_submit_on_commit(turns_rejudge_task, value)
    return value


def turns_rejudge(*, days: int) -> int:
    """Queue judging for the finished turns of the last `days` days that the current judge
    versions have not scored, failed ones included. Returns how many turns were queued."""
    now = timezone.now()
    turns = selectors.turns_unjudged(since=now - timedelta(days=days), until=now, retry_failed=True)
    ids = list(turns.values_list("pk", flat=True)[:JUDGE_BATCH_MAX_TURNS])
    _queue_judging(ids)
    return len(ids)


def turns_judge_sweep() -> int:
    """Queue judging for recent finished turns no current judge version has looked at (a broker
    outage when the turn finished, a judge switched on since). Runs periodically."""
    now = timezone.now()
    turns = selectors.turns_unjudged(
        since=now - SWEEP_WINDOW, until=now - SWEEP_GRACE, retry_failed=False
    )
    ids = list(turns.values_list("pk", flat=True)[:JUDGE_BATCH_MAX_TURNS])
    _queue_judging(ids)
    return len(ids)
