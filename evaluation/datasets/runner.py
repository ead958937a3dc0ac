"""Running an experiment: every item of the pinned dataset version through the chat pipeline
(no Turn is written), every enabled judge on each output, reference metrics against the gold
answers, one stored result per item.

The same code runs in the Celery task and in `manage.py run_experiment`. It resumes: items that
already have a result are skipped, so a rerun after a killed worker picks up where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db import IntegrityError, transaction
from django.utils import timezone

from chatbot.llm.router import route_choose
from chatbot.llm.types import ModelError
from chatbot.models import AssistantSettings, DatasetItem, Experiment, ExperimentResult
from evaluation import metrics
from evaluation import selectors as judge_selectors
from evaluation.datasets import selectors, services
from evaluation.judges import JudgeCase, JudgeError, JudgeSpec, Verdict, judge_apply
from evaluation.pipeline import PipelineAnswer, pipeline_answer
from evaluation.services import judge_spec

logger = logging.getLogger(__name__)

# Reference metrics, stored beside the judges' scores in `ExperimentResult.scores`.
F1 = "token_f1"
CONTAINMENT = "containment"
REFUSAL_CORRECT = "refusal_correct"
METRICS = (F1, CONTAINMENT, REFUSAL_CORRECT)

Progress = Callable[[Experiment, ExperimentResult], None]


@dataclass
class _Judge:
    label: str
    spec: JudgeSpec | None  # None: the judge cannot run (its model is unusable); scores null
    problem: str = ""


def _judges() -> list[_Judge]:
    prepared: list[_Judge] = []
    for judge in judge_selectors.judges_active().select_related("endpoint"):
        try:
            prepared.append(_Judge(judge.name, judge_spec(judge)))
        except JudgeError as exc:
            prepared.append(_Judge(judge.name, None, str(exc)))
    return prepared


def refused(result: ExperimentResult | PipelineAnswer) -> bool:
    return result.no_answer or (not result.error and metrics.is_refusal(result.answer))


def item_metrics(item: DatasetItem, answer: PipelineAnswer) -> dict[str, float | None]:
    """Token F1 and containment against the gold answers (a refusal or an error scores 0), and
    for an unanswerable item whether the assistant refused it. None where a metric does not apply."""
    scores: dict[str, float | None] = dict.fromkeys(METRICS)
    gold = list(item.answers or ([item.expected_answer] if item.expected_answer else []))
    said_no = refused(answer)
    if item.unanswerable:
        scores[REFUSAL_CORRECT] = float(said_no and not answer.error)
    elif gold:
        if said_no or answer.error:
            scores[F1] = scores[CONTAINMENT] = 0.0
        else:
            text = metrics.strip_citations(answer.answer)
            scores[F1] = round(metrics.max_f1(text, gold), 6)
            scores[CONTAINMENT] = round(metrics.containment(text, gold), 6)
    return scores


def _judge_scores(
    judges: list[_Judge], item: DatasetItem, answer: PipelineAnswer
) -> dict[str, Any]:
    scores: dict[str, float | None] = {}
    case = JudgeCase(
        question=item.question,
        answer=answer.answer,
        contexts=tuple((n, hit.text) for n, hit in enumerate(answer.hits, start=1)),
        no_answer=answer.no_answer,
    )
    for judge in judges:
        scores[judge.label] = None
        if judge.spec is None or answer.error:
            continue
        try:
            verdict = judge_apply(judge.spec, case)
        except Exception:
            # A judge that fails records null for this item; it never stops the run.
            logger.warning(
                "judge %s failed on dataset item %s", judge.label, item.pk, exc_info=True
            )
            continue
        if isinstance(verdict, Verdict):
            scores[judge.label] = round(verdict.score, 6)
    return scores


def _result(
    experiment: Experiment, item: DatasetItem, answer: PipelineAnswer, judges: list[_Judge]
) -> ExperimentResult:
    return ExperimentResult(
        experiment=experiment,
        item=item,
        answer=answer.answer,
        no_answer=answer.no_answer,
        error=answer.error,
        context=[
            {
                "chunk": hit.chunk_id,
                "external_id": hit.external_id,
                "score": round(hit.score, 6),
                "similarity": None if hit.similarity is None else round(hit.similarity, 4),
            }
            for hit in answer.hits
        ],
        scores={**_judge_scores(judges, item, answer), **item_metrics(item, answer)},
        latency_ms=round(answer.latency_ms, 2),
        tokens_in=answer.usage.input_tokens,
        tokens_out=answer.usage.output_tokens,
        cost=answer.cost,
    )


def _save(result: ExperimentResult) -> bool:
    """Store the result; False when another run of the task stored this item first."""
    try:
        with transaction.atomic():
            result.save()
    except IntegrityError:
        return False
    return True


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def summarize(results: list[ExperimentResult]) -> dict[str, Any]:
    """Per-judge and per-metric means over the items each applied to, plus counts and totals."""
    labels = sorted({label for r in results for label in (r.scores or {})})

    def mean_of(label: str) -> float | None:
        return _mean([r.scores[label] for r in results if r.scores.get(label) is not None])

    return {
        "judges": {label: mean_of(label) for label in labels if label not in METRICS},
        "metrics": {label: mean_of(label) for label in METRICS if label in labels},
        "n": len(results),
        "errors": sum(1 for r in results if r.error),
        "refused": sum(1 for r in results if refused(r)),
        "no_answer": sum(1 for r in results if r.no_answer),
        "mean_latency_ms": _mean([r.latency_ms for r in results if not r.error]),
        "tokens_in": sum(r.tokens_in for r in results),
        "tokens_out": sum(r.tokens_out for r in results),
        "cost": str(sum((r.cost for r in results), Decimal(0))),
    }


def _fail(experiment: Experiment, reason: str) -> Experiment:
    experiment.status = Experiment.Status.FAILED
    experiment.error = reason
    experiment.finished_at = timezone.now()
    experiment.save(update_fields=["status", "error", "finished_at"])
    return experiment


def _reader(experiment: Experiment) -> User | AnonymousUser:
    return experiment.created_by or AnonymousUser()


def _start(experiment: Experiment, items: list[DatasetItem], done: set[int]) -> str:
    """Mark the run started; the reason it cannot run, or ''."""
    try:
        retrieval = services.retrieval_settings(experiment.retrieval)
    except services.InvalidExperiment as exc:
        return f"The experiment's retrieval settings are invalid: {exc}"
    grounded = retrieval["grounding"] != AssistantSettings.Grounding.OFF
    if experiment.endpoint is None:
        return "The experiment's model was removed from the catalogue."
    if grounded and experiment.created_by is None:
        return "The person who started the experiment no longer exists; retrieval needs them."
    try:
        route_choose(requested=experiment.endpoint.name)
    except ModelError as exc:
        return exc.user_message
    experiment.status = Experiment.Status.RUNNING
    experiment.items_total = len(items)
    experiment.items_done = len(done)
    experiment.error = ""
    experiment.started_at = experiment.started_at or timezone.now()
    if not done and experiment.kb_as_of_turn_id is None:
        # The knowledge base as this run reads it (it may have moved on since it was queued);
        # as of a turn, the versions pinned when it was made.
        experiment.kb_versions = services.kb_versions_for(
            experiment.created_by, retrieval["collections"]
        )
    experiment.save(
        update_fields=["status", "items_total", "items_done", "error", "started_at", "kb_versions"]
    )
    return ""


def experiment_run(*, experiment_id: int, progress: Progress | None = None) -> Experiment | None:
    """Run (or resume) the experiment; returns it finished, or None when it does not exist."""
    experiment = (
        Experiment.objects.select_related("dataset", "endpoint", "created_by")
        .filter(pk=experiment_id)
        .first()
    )
    if experiment is None or experiment.status == Experiment.Status.DONE:
        return experiment
    items = list(selectors.dataset_items(experiment.dataset, version=experiment.dataset_version))
    done = set(experiment.results.values_list("item_id", flat=True))
    problem = _start(experiment, items, done)
    if problem:
        return _fail(experiment, problem)
    try:
        problems = _run_items(experiment, [i for i in items if i.pk not in done], progress)
    except Exception as exc:
        logger.exception("experiment %s stopped", experiment_id)
        _fail(experiment, f"The run stopped unexpectedly ({type(exc).__name__}: {exc}).")
        raise
    results = list(experiment.results.all())
    experiment.summary = summarize(results)
    current = services.kb_versions_for(
        experiment.created_by, services.retrieval_settings(experiment.retrieval)["collections"]
    )
    # As of a turn's versions, what it reads cannot move.
    as_of = experiment.kb_as_of_turn_id is not None
    experiment.summary["kb_changed_during_run"] = not as_of and current != experiment.kb_versions
    if problems:
        experiment.summary["judge_problems"] = problems
    experiment.items_done = len(results)
    experiment.status = Experiment.Status.DONE
    experiment.finished_at = timezone.now()
    experiment.save(update_fields=["summary", "items_done", "status", "finished_at"])
    return experiment


def _run_items(
    experiment: Experiment, items: list[DatasetItem], progress: Progress | None
) -> dict[str, str]:
    """Answer, judge and store each item; returns why any judge could not run at all."""
    retrieval = services.retrieval_settings(experiment.retrieval)
    config = services.run_config(retrieval)
    judges = _judges()
    reader = _reader(experiment)
    as_of = None
    if experiment.kb_as_of_turn_id is not None:
        as_of = {int(pk): int(version) for pk, version in experiment.kb_versions.items()}
    assert experiment.endpoint is not None
    with asyncio.Runner() as runner:
        for item in items:
            answer = pipeline_answer(
                user=reader,  # type: ignore[arg-type]
                question=item.question,
                endpoint_name=experiment.endpoint.name,
                runner=runner,
                config=config,
                system_prompt=experiment.prompt_template,
                instructions=experiment.answer_template,
                instructions_version_id=experiment.answer_version_id,
                collection_ids=retrieval["collections"],
                as_of=as_of,
            )
            result = _result(experiment, item, answer, judges)
            _save(result)
            experiment.items_done = experiment.results.count()
            Experiment.objects.filter(pk=experiment.pk).update(items_done=experiment.items_done)
            if progress is not None:
                progress(experiment, result)
    return {j.label: j.problem for j in judges if j.spec is None}
