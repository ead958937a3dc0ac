from __future__ import annotations

import uuid
from decimal import Decimal

from django.db import models


class Span(models.Model):
    """One timed step of a turn. Ids are made by the tracer so children can name parents in one batch."""

    class Kind(models.TextChoices):
        LLM = "llm", "Model call"
        RETRIEVAL = "retrieval", "Retrieval"
        TOOL = "tool", "Tool call"
        JUDGE = "judge", "Judge"
        CACHE = "cache", "Cache"
        AGENT = "agent", "Agent step"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    turn = models.ForeignKey("chatbot.Turn", on_delete=models.CASCADE, related_name="spans")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    kind = models.CharField(max_length=12, choices=Kind.choices)
    name = models.CharField(max_length=200)
    started_at = models.DateTimeField()
    duration_ms = models.FloatField(default=0)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal(0))
    attributes = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["started_at"]
        indexes = [
            models.Index(fields=["turn", "started_at"]),
            models.Index(fields=["kind", "started_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"
