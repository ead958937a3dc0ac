from __future__ import annotations

from django.db import models


class RoutingRule(models.Model):
    """One rule of the hybrid router, in the ordered list admins edit (Console → Routing).

    What `endpoint_ids` means depends on the kind: the models that may receive the data
    (sensitivity), the models to pick, first allowed one wins (task, difficulty), the cheaper
    models to switch to when over the cap (budget; none means refuse), the fallback list in order
    (availability). `options` holds the kind's own settings; `chatbot.llm.routing` reads and
    checks them.
    """

    class Kind(models.TextChoices):
        SENSITIVITY = "sensitivity", "Sensitivity: personal or confidential data"
        TASK = "task", "Task: classification, extraction, short answers"
        DIFFICULTY = "difficulty", "Difficulty: long, multi-part or weakly grounded questions"
        BUDGET = "budget", "Budget: a group's daily cap"
        AVAILABILITY = "availability", "Availability: retries and fallbacks"

    name = models.CharField(max_length=80)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    order = models.PositiveIntegerField(default=0)
    enabled = models.BooleanField(default=True)
    reason = models.CharField(
        max_length=150, help_text="Shown in the trace and on the turn when this rule decides."
    )
    options = models.JSONField(default=dict, blank=True)
    # Catalogue ids in order (ids, not names: renaming a model keeps its rules).
    endpoint_ids = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["order", "pk"]

    def __str__(self) -> str:
        return self.name
