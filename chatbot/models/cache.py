from __future__ import annotations

from decimal import Decimal

from django.db import models
from pgvector.django import VectorField

from chatbot.models.knowledge import EMBEDDING_DIMENSIONS


class AnswerCacheEntry(models.Model):
    """An answer every judge passed, served again to a question asked in the same scope
    (`chatbot.agent.cache`).

    The scope is everything the answer depended on besides the question: the exact set of
    collections its asker could read with each one's version, the endpoint (and its version), the
    prompt version and the grounding settings. A person whose scope differs, or a collection whose
    version moved on, can never reach the entry, so it cannot be served stale or to someone who
    may not read its passages; `retired_at` is the clean-up that follows. Deleting the turn it was
    made from deletes it: nothing derived from a deleted question survives.
    """

    # sha256 of the scope and the normalised question: the exact lookup.
    key = models.CharField(max_length=64)
    # sha256 of the scope alone: the semantic lookup compares questions inside one scope.
    scope = models.CharField(max_length=64)
    question = models.TextField()
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS)
    answer = models.TextField()
    # The numbered passages the answer was given, copied to each turn it answers:
    # [{"chunk_id", "number", "score", "similarity", "cited"}].
    citations = models.JSONField(default=list, blank=True)
    source_turn = models.OneToOneField(
        "chatbot.Turn", on_delete=models.CASCADE, related_name="cache_entry"
    )
    endpoint = models.ForeignKey(
        "chatbot.ModelEndpoint", on_delete=models.CASCADE, related_name="cache_entries"
    )
    # {collection id: version} of every collection in the scope (what retiring compares).
    kb_versions = models.JSONField(default=dict, blank=True)
    # What the source turn spent: each hit saves as much.
    tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal(0))
    hits = models.PositiveIntegerField(default=0)
    last_hit_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    retired_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["key"],
                condition=models.Q(retired_at__isnull=True),
                name="one_live_answer_per_cache_key",
            )
        ]
        indexes = [
            # A scope holds few entries: the semantic lookup scans them exactly, no ANN index.
            models.Index(
                fields=["scope"],
                condition=models.Q(retired_at__isnull=True),
                name="answer_cache_live_scope",
            )
        ]

    def __str__(self) -> str:
        return f"Cached answer of turn {self.source_turn_id}"
