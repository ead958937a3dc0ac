"""Reads for the `classify` tool and the console's table of classifier versions."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import F, FloatField, QuerySet
from django.db.models.functions import Cast

from chatbot.models import ClassifierVersion


@dataclass(frozen=True)
class ActiveClassifier:
    pk: int
    task: str
    version: int
    labels: list[str]
    heldout_accuracy: float | None
    baseline_accuracy: float | None


_ACTIVE_FIELDS = ("pk", "task", "version", "labels", "heldout_accuracy", "baseline_accuracy")


def classifier_versions() -> QuerySet[ClassifierVersion]:
    """Every version, by task then newest first, without the artifacts; `lift` is held-out
    accuracy minus the majority baseline (None when either is missing)."""
    return (
        ClassifierVersion.objects.select_related("created_by")
        .defer("artifact")
        .annotate(
            lift=Cast(F("heldout_accuracy") - F("baseline_accuracy"), output_field=FloatField())
        )
        .order_by("task", "-version")
    )


def classifier_active(*, task: str) -> ActiveClassifier | None:
    """The version answering for `task`: one query, without the artifact."""
    row = ClassifierVersion.objects.filter(task=task, active=True).values(*_ACTIVE_FIELDS).first()
    return None if row is None else ActiveClassifier(**row)


def classifiers_active() -> dict[str, ActiveClassifier]:
    """The answering version of every task that has one: one query."""
    rows = ClassifierVersion.objects.filter(active=True).values(*_ACTIVE_FIELDS).order_by("task")
    return {row["task"]: ActiveClassifier(**row) for row in rows}


def classifier_artifact(*, pk: int) -> bytes | None:
    raw = ClassifierVersion.objects.filter(pk=pk).values_list("artifact", flat=True).first()
    return None if raw is None else bytes(raw)
