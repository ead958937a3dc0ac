"""How long each kind of data is kept, who and what is exempt (legal hold), and what each pass of
the retention job removed (`evaluation.retention`)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class RetentionPolicy(models.Model):
    """One kind of data's keeping rule. The defaults keep everything forever: nothing is removed
    until an admin chooses a duration."""

    class Kind(models.TextChoices):
        CONVERSATIONS = "conversations", "Conversations and turns"
        TRACES = "traces", "Traces (spans)"
        JUDGE_RESULTS = "judge_results", "Judge results"
        REVIEWS = "reviews", "Reviews"
        CACHE_ENTRIES = "cache_entries", "Answer cache entries"
        DATASET_ITEMS = "dataset_items", "Dataset items taken from production"
        EXPORTS = "exports", "Training exports (rows and files)"
        EXTRACTION_RUNS = "extraction_runs", "Extraction runs"

    class Action(models.TextChoices):
        DELETE = "delete", "Delete"
        ANONYMISE = "anonymise", "Anonymise (keep the numbers, blank the text)"
        ARCHIVE = "archive", "Archive, then delete"

    kind = models.CharField(max_length=20, choices=Kind.choices, unique=True)
    keep_days = models.PositiveIntegerField(null=True, blank=True)  # null: forever
    action = models.CharField(max_length=10, choices=Action.choices, default=Action.DELETE)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["kind"]
        verbose_name_plural = "retention policies"

    def __str__(self) -> str:
        kept = "forever" if self.keep_days is None else f"{self.keep_days} days"
        return f"{self.get_kind_display()}: {kept}"


class LegalHold(models.Model):
    """Keeps one person's data, or one conversation, out of the retention job and of erasure
    until it is released."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="legal_holds",
    )
    conversation = models.ForeignKey(
        "chatbot.Conversation",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="legal_holds",
    )
    reason = models.CharField(max_length=500)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    released_at = models.DateTimeField(null=True, blank=True)
    released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(user__isnull=False) ^ models.Q(conversation__isnull=False),
                name="legal_hold_on_a_person_or_a_conversation",
            )
        ]

    def __str__(self) -> str:
        on = f"person {self.user_id}" if self.user_id else f"conversation {self.conversation_id}"
        return f"Legal hold on {on}"


class RetentionRun(models.Model):
    """One pass of the retention job: what it removed, per kind (`counts`: {kind: {action: n}})."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    dry_run = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    counts = models.JSONField(default=dict, blank=True)
    # The folder its archives went to (relative to RETENTION_ARCHIVE_DIR), "" when none.
    archive_path = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Retention run {self.pk} ({self.status})"

    @property
    def removed(self) -> int:
        return sum(n for per in self.counts.values() if isinstance(per, dict) for n in per.values())
