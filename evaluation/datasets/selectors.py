"""Reads for datasets and experiments."""

from __future__ import annotations

from django.db.models import Count, F, Q, QuerySet

from chatbot.models import Dataset, DatasetItem, Experiment, ExperimentResult


def _live_at(version: int | F, prefix: str = "") -> Q:
    """Items present in `version`: added by then and not yet removed."""
    return Q(**{f"{prefix}added_in__lte": version}) & (
        Q(**{f"{prefix}removed_in__isnull": True}) | Q(**{f"{prefix}removed_in__gt": version})
    )


def dataset_items(dataset: Dataset, version: int | None = None) -> QuerySet[DatasetItem]:
    """The items of `dataset` as they were in `version` (default: the current one)."""
    at = dataset.version if version is None else version
    return DatasetItem.objects.filter(_live_at(at), dataset=dataset).order_by("pk")


def datasets_with_counts() -> QuerySet[Dataset]:
    return Dataset.objects.annotate(
        item_count=Count("items", filter=_live_at(F("version"), "items__"), distinct=True),
        experiment_count=Count("experiments", distinct=True),
    ).order_by("name")


def dataset_get(pk: int) -> Dataset:
    return Dataset.objects.select_related("created_by").get(pk=pk)


def experiments_list(*, dataset: Dataset | None = None) -> QuerySet[Experiment]:
    experiments = Experiment.objects.select_related("dataset", "endpoint", "created_by")
    if dataset is not None:
        experiments = experiments.filter(dataset=dataset)
    return experiments.order_by("-created_at", "-pk")


def experiment_get(pk: int) -> Experiment:
    return Experiment.objects.select_related("dataset", "endpoint", "created_by").get(pk=pk)


def experiment_results(experiment: Experiment) -> QuerySet[ExperimentResult]:
    return (
        ExperimentResult.objects.filter(experiment=experiment)
        .select_related("item")
        .order_by("item_id")
    )


def item_from_escalation(*, dataset: Dataset, escalation_id: int) -> DatasetItem | None:
    """The live item already made from this escalation's reply in this dataset, if any."""
    return dataset_items(dataset).filter(source_escalation_id=escalation_id).order_by("pk").first()


def item_from_review(*, dataset: Dataset, review_id: int) -> DatasetItem | None:
    """The live item already made from this review in this dataset, if any."""
    return dataset_items(dataset).filter(source_review_id=review_id).order_by("pk").first()
