"""Writes for datasets (versioned items, jsonl import, items made from reviews) and experiments.

Every change to a dataset's items bumps `Dataset.version` under a row lock, so two reviewers adding
items at once get consecutive versions and an experiment's pinned version never changes under it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from django.conf import settings as django_settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import IntegrityError, transaction

from chatbot.accounts.visibility import collections_visible_to
from chatbot.agent.grounding import assistant_settings
from chatbot.knowledge.ingest import versions_kept_since
from chatbot.llm.router import route_choose
from chatbot.llm.types import ModelError
from chatbot.models import (
    AssistantSettings,
    Citation,
    Dataset,
    DatasetItem,
    Escalation,
    Experiment,
    ModelEndpoint,
    Review,
    Turn,
)
from evaluation import metrics
from evaluation.datasets import selectors
from evaluation.offline.data import BadJsonlFile, ItemData, load_items


class InvalidDataset(ValueError):
    """A dataset change that cannot be made; the message is shown to the person as it is."""


class InvalidExperiment(ValueError):
    """An experiment that cannot be started; the message is shown to the person as it is."""


# --- datasets ------------------------------------------------------------------------------------


def _clean_name(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise InvalidDataset("Give the dataset a name.")
    if len(name) > 120:
        raise InvalidDataset("A dataset name has at most 120 characters.")
    return name


def dataset_create(
    *, name: str, description: str = "", user: User | None = None, items: Iterable[ItemData] = ()
) -> Dataset:
    """A new dataset at version 1, holding `items` from the start."""
    name = _clean_name(name)
    try:
        with transaction.atomic():
            dataset = Dataset.objects.create(
                name=name, description=description.strip(), version=1, created_by=user
            )
            _items_create(dataset, list(items), version=1)
    except IntegrityError:
        raise InvalidDataset(f"A dataset named “{name}” exists already.") from None
    return dataset


def _bump(dataset: Dataset) -> int:
    """Move the dataset on one version; the caller is inside the transaction that uses it."""
    locked = Dataset.objects.select_for_update().get(pk=dataset.pk)
    locked.version += 1
    locked.save(update_fields=["version", "updated_at"])
    dataset.version = locked.version
    return locked.version


def _item(dataset: Dataset, data: ItemData, version: int, **provenance: Any) -> DatasetItem:
    return DatasetItem(
        dataset=dataset,
        external_id=data.external_id,
        question=data.question,
        context=data.context,
        expected_answer=data.expected_answer,
        answers=list(data.answers),
        unanswerable=data.unanswerable,
        metadata=data.metadata,
        added_in=version,
        **provenance,
    )


def _items_create(dataset: Dataset, items: Sequence[ItemData], version: int) -> list[DatasetItem]:
    return DatasetItem.objects.bulk_create(
        [_item(dataset, data, version) for data in items], batch_size=500
    )


@transaction.atomic
def dataset_item_add(*, dataset: Dataset, data: ItemData, **provenance: Any) -> DatasetItem:
    """Add one item as a new version of the dataset. `provenance`: source_turn, source_review."""
    if not data.question.strip():
        raise InvalidDataset("A dataset item needs a question.")
    version = _bump(dataset)
    item = _item(dataset, data, version, **provenance)
    item.save()
    return item


@transaction.atomic
def dataset_item_remove(*, item: DatasetItem) -> DatasetItem:
    """Take the item out of the next version; earlier versions (and experiments on them) keep it."""
    locked = DatasetItem.objects.select_for_update().get(pk=item.pk)
    if locked.removed_in is not None:
        raise InvalidDataset(f"This item was already removed in version {locked.removed_in}.")
    locked.removed_in = _bump(item.dataset)
    locked.save(update_fields=["removed_in"])
    return locked


@dataclass(frozen=True)
class Imported:
    dataset: Dataset
    added: int
    created: bool


def dataset_import_jsonl(
    *,
    name: str,
    path: Path | str | None = None,
    file: IO[bytes] | None = None,
    description: str = "",
    user: User | None = None,
) -> Imported:
    """Import items from jsonl (see `evaluation.offline.data` for the shapes) into the dataset
    called `name`, created when missing. The whole import is one version. Raises `BadJsonlFile`
    with the line number of the first bad line; nothing is written then."""
    if (path is None) == (file is None):
        raise ValueError("Pass either path or file.")
    if path is not None:
        try:
            with Path(path).open("rb") as handle:
                items = load_items(handle)
        except OSError as exc:
            raise BadJsonlFile(f"Cannot read {path}: {exc.strerror or exc}.") from None
    else:
        assert file is not None
        items = load_items(file)
    name = _clean_name(name)
    with transaction.atomic():
        existing = Dataset.objects.filter(name=name).first()
        if existing is None:
            dataset = dataset_create(name=name, description=description, user=user, items=items)
            return Imported(dataset=dataset, added=len(items), created=True)
        _items_create(existing, items, version=_bump(existing))
    return Imported(dataset=existing, added=len(items), created=False)


def _turn_context(turn_id: int) -> str:
    """The chunks the turn was given, numbered as the model saw them."""
    rows = (
        Citation.objects.filter(turn_id=turn_id)
        .order_by("number")
        .values_list("number", "chunk__text")
    )
    return "\n\n".join(f"[{number}] {text.strip()}" for number, text in rows)


def dataset_item_from_review(*, review: Review, dataset: Dataset) -> DatasetItem:
    """One click: a reviewed turn becomes a regression test (question, the turn's retrieved
    context, the corrected answer, or the answer itself when the reviewer approved it).

    Clicking twice does not add the item twice: the live item already made from this review in
    this dataset is returned as it is.
    """
    with transaction.atomic():
        # Lock the dataset first, so two clicks at once cannot both find no item and add one.
        dataset.version = Dataset.objects.select_for_update().get(pk=dataset.pk).version
        existing = selectors.item_from_review(dataset=dataset, review_id=review.pk)
        if existing is not None:
            return existing
        return dataset_item_add(
            dataset=dataset,
            data=_review_item_data(review),
            source_turn=review.turn,
            source_review=review,
        )


def dataset_item_from_escalation(*, escalation: Escalation, dataset: Dataset) -> DatasetItem:
    """One click: the question a person handed over, with the human's reply as the expected
    answer (and the context the assistant was given), becomes a dataset item. Clicking twice does
    not add it twice."""
    if not escalation.answer.strip():
        raise InvalidDataset("Reply to the escalation first: its reply is the expected answer.")
    turn = escalation.turn
    with transaction.atomic():
        dataset.version = Dataset.objects.select_for_update().get(pk=dataset.pk).version
        existing = selectors.item_from_escalation(dataset=dataset, escalation_id=escalation.pk)
        if existing is not None:
            return existing
        answer = escalation.answer.strip()
        return dataset_item_add(
            dataset=dataset,
            data=ItemData(
                question=turn.user_text.strip(),
                expected_answer=answer,
                answers=(answer,),
                context=_turn_context(turn.pk),
                unanswerable=False,
                external_id=f"escalation-{escalation.pk}",
                metadata={
                    "turn_id": turn.pk,
                    "escalation_id": escalation.pk,
                    "answered_by": escalation.answered_by.username
                    if escalation.answered_by
                    else "",
                    "original_answer": turn.answer,
                    "kb_versions": turn.kb_versions,
                },
            ),
            source_turn=turn,
            source_escalation=escalation,
        )


def _review_item_data(review: Review) -> ItemData:
    turn = review.turn
    corrected = review.corrected_answer.strip()
    if not corrected and not review.approved:
        raise InvalidDataset(
            "This review has no corrected answer and did not approve the answer: write the "
            "correct answer in the review first."
        )
    expected = corrected or turn.answer.strip()
    # An approved "I don't know" is the right output for a question the knowledge base can't
    # answer: the item tests that the assistant keeps refusing it.
    unanswerable = not corrected and (turn.no_answer or metrics.is_refusal(turn.answer))
    return ItemData(
        question=turn.user_text.strip(),
        expected_answer="" if unanswerable else expected,
        answers=() if unanswerable else (expected,),
        context=_turn_context(turn.pk),
        unanswerable=unanswerable,
        external_id=f"turn-{turn.pk}",
        metadata={
            "turn_id": turn.pk,
            "review_id": review.pk,
            "reviewer": review.reviewer.username,
            "causes": list(review.causes or []),
            "grades": review.grades,
            "original_answer": turn.answer,
            "kb_versions": turn.kb_versions,
        },
    )


# --- experiments ---------------------------------------------------------------------------------


def retrieval_settings(raw: dict[str, Any] | None = None) -> dict[str, Any]:
    """The experiment's retrieval settings, filled in from the saved assistant settings and
    checked; `collections` is a list of collection ids or None (every collection visible)."""
    saved = assistant_settings()
    raw = dict(raw or {})
    grounding = raw.get("grounding") or saved.grounding
    if grounding not in AssistantSettings.Grounding.values:
        raise InvalidExperiment(f"Unknown grounding mode {grounding!r}.")
    try:
        k = int(raw["k"] if raw.get("k") is not None else saved.retrieval_k)
        floor = raw.get("min_similarity")
        threshold = float(floor if floor is not None else saved.min_similarity)
        share = raw.get("min_coverage")
        min_coverage = float(share if share is not None else saved.min_coverage)
        odds = raw.get("min_answerable")
        min_answerable = float(odds if odds is not None else saved.min_answerable)
    except (TypeError, ValueError):
        raise InvalidExperiment(
            "k, min_similarity, min_coverage and min_answerable must be numbers."
        ) from None
    if not 1 <= k <= 20:
        raise InvalidExperiment("k (chunks given as context) must be from 1 to 20.")
    if not 0 <= threshold <= 1:
        raise InvalidExperiment("The minimum similarity must be from 0 to 1.")
    if not 0 <= min_coverage <= 1:
        raise InvalidExperiment("The minimum question coverage must be from 0 to 1.")
    if not 0 <= min_answerable <= 1:
        raise InvalidExperiment("The answerability threshold must be from 0 to 1.")
    collections = raw.get("collections")
    if collections is not None:
        collections = sorted({int(pk) for pk in collections}) or None
    return {
        "grounding": grounding,
        "k": k,
        "min_similarity": threshold,
        "min_coverage": min_coverage,
        "min_answerable": min_answerable,
        "collections": collections,
    }


def run_config(retrieval: dict[str, Any]) -> AssistantSettings:
    """Settings for `ground`, never saved: an experiment must not touch production chat."""
    config = assistant_settings()
    config.grounding = retrieval["grounding"]
    config.retrieval_k = retrieval["k"]
    config.min_similarity = retrieval["min_similarity"]
    # Experiments recorded before the coverage check existed ran without it.
    config.min_coverage = retrieval.get("min_coverage", 0.0)
    # ... and those recorded before the no-answer classifier, without it.
    config.min_answerable = retrieval.get("min_answerable", 0.0)
    return config


def kb_versions_for(
    user: User | AnonymousUser | None, collections: list[int] | None
) -> dict[str, int]:
    visible = collections_visible_to(user or AnonymousUser())
    if collections is not None:
        visible = visible.filter(pk__in=collections)
    return {str(pk): version for pk, version in visible.values_list("pk", "version")}


def kb_as_of_versions(
    user: User | AnonymousUser | None, collections: list[int] | None, turn: Turn
) -> dict[str, int]:
    """The versions `turn` read of the collections the run may read (as `kb_versions_for`
    narrows them): what an experiment "as of turn #N" retrieves from."""
    visible = kb_versions_for(user, collections)
    return {pk: int(version) for pk, version in turn.kb_versions.items() if pk in visible}


def kb_as_of_check(turn: Turn, retrieval: dict[str, Any]) -> None:
    """Refuse an experiment as of `turn` when there is nothing (complete) to go back to."""
    if retrieval["grounding"] == AssistantSettings.Grounding.OFF:
        raise InvalidExperiment("An experiment without grounding reads no knowledge base.")
    if not turn.kb_versions:
        raise InvalidExperiment(
            f"Turn #{turn.pk} read no knowledge base (grounding was off, or it ran before "
            "versions were recorded): there is no version to go back to."
        )
    if turn.created_at < versions_kept_since():
        raise InvalidExperiment(
            f"Turn #{turn.pk} ran before the last {django_settings.KNOWLEDGE_VERSIONS_KEEP_DAYS} "
            "days whose knowledge-base versions are kept: passages it read may be gone."
        )


def experiment_endpoint(endpoint: ModelEndpoint | None) -> ModelEndpoint:
    """The catalogue entry an experiment runs on: `endpoint`, or the router's default."""
    try:
        chosen = route_choose(requested=endpoint.name if endpoint else None)
    except ModelError as exc:
        raise InvalidExperiment(exc.user_message) from None
    return ModelEndpoint.objects.get(pk=chosen.endpoint.id)


def experiment_create(
    *,
    dataset: Dataset,
    endpoint: ModelEndpoint | None = None,
    prompt_template: str = "",
    retrieval: dict[str, Any] | None = None,
    name: str = "",
    user: User | None = None,
    queue: bool = True,
    kb_as_of_turn: Turn | None = None,
) -> Experiment:
    """Pin the dataset's current version and the knowledge base's versions, then (with `queue`)
    run it in the background once the transaction commits. Retrieval runs as `user`; with
    `kb_as_of_turn`, against the knowledge base as it was on that turn (its `kb_versions`)."""
    from chatbot.jobs import job_submit_on_commit
    from evaluation.datasets.tasks import experiment_run_task

    chosen = experiment_endpoint(endpoint)
    settings = retrieval_settings(retrieval)
    if settings["grounding"] != AssistantSettings.Grounding.OFF and user is None:
        raise InvalidExperiment("Grounded experiments retrieve as a person: name the user.")
    if kb_as_of_turn is not None:
        kb_as_of_check(kb_as_of_turn, settings)
    total = selectors.dataset_items(dataset).count()
    if total == 0:
        raise InvalidExperiment(
            f"The dataset “{dataset.name}” has no items yet: add or import some."
        )
    name = " ".join(name.split()) or f"{dataset.name} v{dataset.version} · {chosen.name}"
    experiment = Experiment.objects.create(
        name=name[:200],
        dataset=dataset,
        dataset_version=dataset.version,
        endpoint=chosen,
        prompt_template=prompt_template.strip(),
        retrieval=settings,
        kb_versions=(
            kb_as_of_versions(user, settings["collections"], kb_as_of_turn)
            if kb_as_of_turn is not None
            else kb_versions_for(user, settings["collections"])
        ),
        kb_as_of_turn=kb_as_of_turn,
        items_total=total,
        created_by=user,
    )
    if queue:
        job_submit_on_commit(experiment_run_task, experiment.pk)
    return experiment
