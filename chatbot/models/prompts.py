"""Prompts as versioned data: what the assistant is told besides the question.

A version is a draft while it is being written, published while turns use it (exactly one per
kind), retired once another took its place. Published text is never edited: a change is a new
version, so a turn's `prompt_version` always says which words the model was given.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class PromptVersion(models.Model):
    class Kind(models.TextChoices):
        SYSTEM = "system", "System prompt"
        # How to answer from the numbered knowledge-base passages (added after the system
        # prompt whenever passages are sent; `chatbot.agent.grounding`).
        ANSWER = "answer", "Answer instructions"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        PUBLISHED = "published", "Published"
        RETIRED = "retired", "Retired"

    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.SYSTEM)
    number = models.PositiveIntegerField()
    text = models.TextField(max_length=8000)
    note = models.CharField(max_length=300, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="prompt_versions",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)
    # The gate: the dataset the draft was compared on, its run and the published version's run.
    gate_dataset = models.ForeignKey(
        "chatbot.Dataset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    gate_experiment = models.ForeignKey(
        "chatbot.Experiment", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    gate_baseline = models.ForeignKey(
        "chatbot.Experiment", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Published by an admin without a gate, on purpose (the checkbox on the page).
    ungated = models.BooleanField(default=False)

    class Meta:
        ordering = ["kind", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "number"], name="prompt_version_number"),
            models.UniqueConstraint(
                fields=["kind"],
                condition=models.Q(status="published"),
                name="one_published_prompt_per_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} v{self.number} ({self.status})"
