"""Synthetic test questions: generated from knowledge-base chunks by a chosen model, reviewed by a
person, and only then added to a dataset.

A `SyntheticRun` is one "Generate synthetic questions" job: a sample of a collection's chunks, a
model, and what to make of each chunk (question variants it answers, hard negatives it does not).
Each question the model writes is a `SyntheticCandidate`, waiting in the review area; accepting it
makes the `DatasetItem`, with where it came from kept on both.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class SyntheticRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    dataset = models.ForeignKey(
        "chatbot.Dataset", on_delete=models.CASCADE, related_name="synthetic_runs"
    )
    collection = models.ForeignKey(
        "chatbot.Collection", on_delete=models.CASCADE, related_name="synthetic_runs"
    )
    endpoint = models.ForeignKey(
        "chatbot.ModelEndpoint",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="synthetic_runs",
    )
    # Kept as written when the run was asked for: the catalogue row may be renamed or removed.
    endpoint_name = models.CharField(max_length=100)
    # ["variant", "negative"]: what each chunk is asked for.
    kinds = models.JSONField(default=list)
    variants_per_chunk = models.PositiveSmallIntegerField(default=3)
    negatives_per_chunk = models.PositiveSmallIntegerField(default=1)
    sample_size = models.PositiveIntegerField(default=0)
    # The sampled chunks, fixed when the run is saved: a job sent twice works through the same
    # list, from `chunks_done` on.
    chunk_ids = models.JSONField(default=list)
    # The generation prompts' version and digest ({kind: sha256 prefix}): part of each
    # candidate's generator key.
    prompt_version = models.CharField(max_length=40)
    prompt_hashes = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    candidates_made = models.PositiveIntegerField(default=0)
    # Questions the same chunk and generator had already given (same text): not made twice.
    duplicates_skipped = models.PositiveIntegerField(default=0)
    # Model outputs that did not fit the schema even when asked a second time.
    invalid_outputs = models.PositiveIntegerField(default=0)
    # [{"chunk": id, "kind": ..., "problem": words}, ...] the last few problems, for the page.
    problems = models.JSONField(default=list, blank=True)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    # True when the server gave no counts for some call and we estimated them.
    tokens_estimated = models.BooleanField(default=False)
    cost = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="synthetic_runs",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Synthetic questions {self.pk} from {self.collection_id} ({self.status})"

    @property
    def percent(self) -> int:
        return int(100 * self.chunks_done / self.chunks_total) if self.chunks_total else 0

    @property
    def finished(self) -> bool:
        return self.status in {self.Status.DONE, self.Status.FAILED}


class SyntheticCandidate(models.Model):
    """One generated question waiting for a reviewer: the review queue's "synthetic question"
    kind. The generated text is never changed; a reviewer's edit goes to the dataset item."""

    class Kind(models.TextChoices):
        VARIANT = "variant", "Question variant"
        NEGATIVE = "negative", "Hard negative (should refuse)"

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for review"
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected"

    run = models.ForeignKey(SyntheticRun, on_delete=models.CASCADE, related_name="candidates")
    # The dataset an accepted candidate goes to (the run's).
    dataset = models.ForeignKey(
        "chatbot.Dataset", on_delete=models.CASCADE, related_name="synthetic_candidates"
    )
    chunk = models.ForeignKey(
        "chatbot.Chunk",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="synthetic_candidates",
    )
    document = models.ForeignKey(
        "chatbot.Document",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="synthetic_candidates",
    )
    collection = models.ForeignKey(
        "chatbot.Collection", on_delete=models.CASCADE, related_name="synthetic_candidates"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    question = models.TextField()
    # Variants: the answer the chunk gives. Hard negatives: blank (the right output refuses).
    expected_answer = models.TextField(blank=True)
    # Hard negatives: what the model says the chunk lacks, to help the reviewer judge.
    note = models.TextField(blank=True)
    # sha256 of the endpoint, its model id and the prompt's digest: "who made it".
    generator = models.CharField(max_length=64)
    # sha256 of the question, case and spacing folded.
    text_hash = models.CharField(max_length=64)
    endpoint_name = models.CharField(max_length=100)
    prompt_hash = models.CharField(max_length=64)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="synthetic_reviews",
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reject_reason = models.CharField(max_length=500, blank=True)
    edited = models.BooleanField(default=False)
    dataset_item = models.OneToOneField(
        "chatbot.DatasetItem",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="synthetic_candidate",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["chunk", "generator", "text_hash"], name="one_synthetic_question_per_key"
            )
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="synthetic_queue"),
            models.Index(fields=["run", "status"], name="synthetic_by_run"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.question[:60]}"
