"""Regression reruns: when the default model or a published prompt (the system prompt or the
answer instructions) changes, every dataset flagged `regression` (made from reviewed production
failures) runs again as an experiment, linked from the change (`Experiment.trigger`,
`Experiment.prompt_version`, `Experiment.answer_version`).

Called inside the change's transaction, so the experiments exist exactly when the change does;
their runs are queued on commit (`experiment_create`). Calling it twice for one change queues
nothing more: a dataset whose latest rerun already has the same model (not edited since), prompt
version and dataset version is left alone.
"""

from __future__ import annotations

from django.contrib.auth.models import User

from chatbot.agent.prepare import answer_instructions_published, system_prompt_published
from chatbot.models import Dataset, Experiment, ModelEndpoint
from evaluation.datasets import services


def _already(
    dataset: Dataset, endpoint: ModelEndpoint, prompt_id: int | None, answer_id: int | None
) -> Experiment | None:
    latest = (
        Experiment.objects.filter(dataset=dataset)
        .exclude(trigger="")
        .exclude(status=Experiment.Status.FAILED)
        .order_by("-created_at", "-pk")
        .first()
    )
    if latest is None:
        return None
    same = (
        latest.endpoint_id == endpoint.pk
        and latest.prompt_version_id == prompt_id
        and latest.answer_version_id == answer_id
        and latest.dataset_version == dataset.version
        and latest.created_at >= endpoint.updated_at
    )
    return latest if same else None


def regression_reruns_queue(*, reason: str, user: User | None) -> list[Experiment]:
    """One experiment per regression dataset with the default model and the published prompts;
    retrieval runs as `user` (the admin who made the change). Datasets that cannot run (no items,
    no model) are skipped: the change itself must not fail for them."""
    try:
        endpoint = services.experiment_endpoint(None)
    except services.InvalidExperiment:
        return []
    prompt_id, text = system_prompt_published()
    answer_id, instructions = answer_instructions_published()
    started: list[Experiment] = []
    for dataset in Dataset.objects.filter(regression=True):
        existing = _already(dataset, endpoint, prompt_id, answer_id)
        if existing is not None:
            started.append(existing)
            continue
        try:
            experiment = services.experiment_create(
                dataset=dataset,
                endpoint=endpoint,
                prompt_template=text,
                name=f"Regression rerun · {dataset.name} · {reason}",
                user=user,
            )
        except services.InvalidExperiment:
            continue
        experiment.prompt_version_id, experiment.trigger = prompt_id, reason[:200]
        experiment.answer_version_id, experiment.answer_template = answer_id, instructions
        experiment.save(
            update_fields=["prompt_version", "trigger", "answer_version", "answer_template"]
        )
        started.append(experiment)
    return started


def dataset_set_regression(*, dataset: Dataset, regression: bool) -> Dataset:
    """Mark (or unmark) a dataset as a regression set: rerun on every model or prompt change."""
    dataset.regression = regression
    dataset.save(update_fields=["regression", "updated_at"])
    return dataset
