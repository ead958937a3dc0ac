"""Online A/B tests: live traffic split between variants of the assistant.

A variant changes what a turn is answered with (an endpoint, a prompt version, retrieval
settings); people are assigned to a variant once and keep it (`ABAssignment`), and each turn
answered under a test names its variant (`Turn.ab_variant`). At most one test runs at a time.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ABTest(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        RUNNING = "running", "Running"
        STOPPED = "stopped", "Stopped"

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, max_length=2000)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="ab_tests",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    # The variant an admin promoted when stopping (its settings became the defaults).
    winner = models.ForeignKey(
        "chatbot.ABVariant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    promoted_at = models.DateTimeField(null=True, blank=True)
    promoted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["status"],
                condition=models.Q(status="running"),
                name="one_running_ab_test",
            )
        ]

    def __str__(self) -> str:
        return self.name


class ABVariant(models.Model):
    test = models.ForeignKey(ABTest, on_delete=models.CASCADE, related_name="variants")
    name = models.CharField(max_length=80)
    # The control: what production does today (its endpoint, prompt and retrieval fields blank).
    is_control = models.BooleanField(default=False)
    # Share of the people assigned to it, in percent; a test's variants add up to 100.
    weight = models.PositiveSmallIntegerField(default=50)
    # Blank: the default endpoint (or what the routing rules choose).
    endpoint = models.ForeignKey(
        "chatbot.ModelEndpoint", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Blank: the published system prompt.
    prompt_version = models.ForeignKey(
        "chatbot.PromptVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Overrides of the assistant settings' retrieval fields, e.g. {"retrieval_k": 8,
    # "min_similarity": 0.35}; empty: the saved settings.
    retrieval = models.JSONField(default=dict, blank=True)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["test", "position", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["test", "name"], name="ab_variant_name"),
        ]

    def __str__(self) -> str:
        return self.name


class ABAssignment(models.Model):
    """Sticky: a person keeps the variant they were first given for the whole test."""

    test = models.ForeignKey(ABTest, on_delete=models.CASCADE, related_name="assignments")
    variant = models.ForeignKey(ABVariant, on_delete=models.CASCADE, related_name="assignments")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ab_assignments"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["test", "user"], name="one_ab_assignment_per_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} -> {self.variant_id}"
