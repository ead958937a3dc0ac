from __future__ import annotations

from django.conf import settings
from django.db import models


class ToolSetting(models.Model):
    """How admins configure one tool the agent may call. The tools themselves are registered in
    code (`chatbot.agent.tools`); a row per registered tool is made by `bootstrap`."""

    name = models.SlugField(max_length=50, unique=True)
    enabled = models.BooleanField(default=False)
    # Role (group) names allowed to have the agent call this tool for them.
    roles = models.JSONField(default=list, blank=True)
    timeout_s = models.FloatField(
        default=10.0, help_text="How long one call may take before it is abandoned (seconds)."
    )
    # Tool-specific settings (the SQL tool's tables and row limit, the HTTP tool's endpoints, the
    # extraction schema, the draft templates); each tool validates its own.
    options = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ClassifierVersion(models.Model):
    """One trained version of a classical text classifier the `classify` tool serves (ticket
    intent, priority). Trained by `manage.py train_classifier`; the active version per task
    answers."""

    task = models.SlugField(max_length=50)
    version = models.PositiveIntegerField()
    # The fitted scikit-learn pipeline, serialised with joblib.
    artifact = models.BinaryField()
    algorithm = models.CharField(max_length=100)
    labels = models.JSONField(default=list)
    trained_on = models.PositiveIntegerField(default=0)
    held_out = models.PositiveIntegerField(default=0)
    heldout_accuracy = models.FloatField(null=True, blank=True)
    # Accuracy of always predicting the most common label on the same held-out rows.
    baseline_accuracy = models.FloatField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    data_sha256 = models.CharField(max_length=64, blank=True)
    active = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="classifier_versions",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["task", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["task", "version"], name="classifier_task_version"),
            models.UniqueConstraint(
                fields=["task"],
                condition=models.Q(active=True),
                name="one_active_classifier_per_task",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task} v{self.version}"
