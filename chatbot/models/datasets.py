"""Datasets, offline experiments, exports and the reward model: the flywheel's outputs.

A dataset is versioned without copying: every change bumps `Dataset.version`, and an item belongs
to the versions from `added_in` up to (not including) `removed_in`. An experiment pins the version
it ran on, so its results stay comparable after the dataset grows.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models


class Dataset(models.Model):
    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    version = models.PositiveIntegerField(default=1)
    # Made from reviewed production failures: rerun as an experiment whenever the default model
    # or the published prompt changes.
    regression = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="datasets",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class DatasetItem(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="items")
    external_id = models.CharField(max_length=200, blank=True)
    question = models.TextField()
    # The context the answer should rest on (retrieved chunks at review time, or imported).
    context = models.TextField(blank=True)
    expected_answer = models.TextField(blank=True)
    # Gold answers as a list (several accepted forms); `expected_answer` is the first.
    answers = models.JSONField(default=list, blank=True)
    # An item whose question the knowledge base cannot answer: the right output is a refusal.
    unanswerable = models.BooleanField(default=False)
    metadata = models.JSONField(default=dict, blank=True)
    # Provenance: the production turn and the review it came from.
    source_turn = models.ForeignKey(
        "chatbot.Turn",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="dataset_items",
    )
    source_review = models.ForeignKey(
        "chatbot.Review",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="dataset_items",
    )
    # ... or the escalation whose human answer it keeps.
    source_escalation = models.ForeignKey(
        "chatbot.Escalation",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="dataset_items",
    )
    added_in = models.PositiveIntegerField()
    removed_in = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset", "id"]
        indexes = [models.Index(fields=["dataset", "added_in", "removed_in"])]

    def __str__(self) -> str:
        return f"{self.dataset.name}: {self.question[:60]}"


class Experiment(models.Model):
    """A dataset version run against one configuration; every output judged."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    name = models.CharField(max_length=200)
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="experiments")
    dataset_version = models.PositiveIntegerField()
    endpoint = models.ForeignKey(
        "chatbot.ModelEndpoint",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="experiments",
    )
    # The system prompt; blank uses the product's default.
    prompt_template = models.TextField(blank=True)
    # The versioned prompt the text came from, when it did.
    prompt_version = models.ForeignKey(
        "chatbot.PromptVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="experiments",
    )
    # The answer instructions (how to answer from the passages); blank uses the published ones.
    answer_template = models.TextField(blank=True)
    answer_version = models.ForeignKey(
        "chatbot.PromptVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # Why it was started by the product itself (a regression rerun after a change); blank when a
    # person started it.
    trigger = models.CharField(max_length=200, blank=True)
    # {"grounding": ..., "k": ..., "min_similarity": ..., "collections": [ids] or null}
    retrieval = models.JSONField(default=dict, blank=True)
    # {collection id: version} read when the run started.
    kb_versions = models.JSONField(default=dict, blank=True)
    # Run against the knowledge base as it was on this turn (its `Turn.kb_versions`); null: as
    # it is now.
    kb_as_of_turn = models.ForeignKey(
        "chatbot.Turn", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    items_total = models.PositiveIntegerField(default=0)
    items_done = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    # {"judges": {judge label: mean}, "n": ..., ...} filled in when the run ends.
    summary = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="experiments",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    @property
    def percent(self) -> int:
        return int(100 * self.items_done / self.items_total) if self.items_total else 0


class ExperimentResult(models.Model):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="results")
    item = models.ForeignKey(DatasetItem, on_delete=models.CASCADE, related_name="results")
    answer = models.TextField(blank=True)
    no_answer = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    # [{"chunk": id, "external_id": ..., "score": ...}, ...] the context it was given.
    context = models.JSONField(default=list, blank=True)
    # {judge label: score 0-1 or null when the judge failed or did not apply}
    scores = models.JSONField(default=dict, blank=True)
    latency_ms = models.FloatField(default=0)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal(0))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["experiment", "item"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "item"], name="one_result_per_item")
        ]

    def __str__(self) -> str:
        return f"{self.experiment} / item {self.item_id}"


class Export(models.Model):
    """A training export written in the background: supervised fine-tuning or preference pairs."""

    class Kind(models.TextChoices):
        SFT = "sft", "Supervised fine-tuning (chat messages jsonl)"
        DPO = "dpo", "Preference pairs for DPO (prompt, chosen, rejected)"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    # Filters used (date range, dataset, ...), kept for provenance.
    params = models.JSONField(default=dict, blank=True)
    rows_total = models.PositiveIntegerField(default=0)
    rows_done = models.PositiveIntegerField(default=0)
    rows_written = models.PositiveIntegerField(default=0)
    duplicates_dropped = models.PositiveIntegerField(default=0)
    pii_redacted = models.PositiveIntegerField(default=0)
    # Relative to the exports folder (a shared volume or bucket at scale).
    path = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="exports",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} export {self.pk} ({self.status})"

    @property
    def percent(self) -> int:
        return int(100 * self.rows_done / self.rows_total) if self.rows_total else 0


class RewardModel(models.Model):
    """A small classifier on answer embeddings trained from human grades and thumbs. Versioned;
    the active one scores every new answer as one more judge."""

    version = models.PositiveIntegerField(unique=True)
    # The fitted scikit-learn estimator, serialised with joblib.
    artifact = models.BinaryField()
    algorithm = models.CharField(max_length=100)
    trained_on = models.PositiveIntegerField(default=0)
    held_out = models.PositiveIntegerField(default=0)
    heldout_accuracy = models.FloatField(null=True, blank=True)
    # Accuracy of always predicting the majority label on the same held-out rows.
    baseline_accuracy = models.FloatField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    active = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="reward_models",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-version"]

    def __str__(self) -> str:
        return f"reward model v{self.version}"
