from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class ExtractionRun(models.Model):
    """A batch of texts an agent had the `extract` tool fill one of the admin's schemas from, on
    the chat's extraction page; run in the background, text by text, resumable."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="extraction_runs"
    )
    schema_name = models.CharField(max_length=80)
    # The admin's schema entry ({"description", "schema", "examples"}) as it was when the run was
    # asked for: a later edit changes new runs only.
    definition = models.JSONField(default=dict)
    texts = models.JSONField(default=list)
    # One entry per text done, in order: {"fields": {...} | null, "error": "", "attempts": n}.
    results = models.JSONField(default=list, blank=True)
    # sha256 of the schema and the texts: the same person sending the same batch again shortly
    # after (a double click, a reload) gets this run back instead of a second one.
    content_hash = models.CharField(max_length=64)
    source_name = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    endpoint_name = models.CharField(max_length=100, blank=True)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "content_hash"], name="extraction_owner_hash"),
            models.Index(fields=["owner", "-created_at"], name="extraction_owner_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.schema_name} extraction {self.pk} ({self.status})"

    @property
    def schema(self) -> dict[str, Any]:
        schema = self.definition.get("schema") if isinstance(self.definition, dict) else None
        return schema if isinstance(schema, dict) else {}

    @property
    def finished(self) -> bool:
        return self.status in {self.Status.DONE, self.Status.FAILED}
