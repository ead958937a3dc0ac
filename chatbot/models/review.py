"""The human-review queue: rules that flag turns, the queue items, who is working on what, and
the graded reviews. Everything keys off the turn."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class FlagRule(models.Model):
    """A rule that puts turns in the review queue. Editable by admins; the highest-priority rule
    that matched gives the item its priority, every matching rule adds a reason."""

    class Kind(models.TextChoices):
        THUMBS_DOWN = "thumbs_down", "Thumbs down"
        JUDGE_BELOW = "judge_below", "A judge scored under its threshold"
        NO_ANSWER = "no_answer", "No answer (nothing relevant found)"
        ESCALATION = "escalation", "Escalated to a human"
        RANDOM_SAMPLE = "random_sample", "Random sample for calibration"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    priority = models.PositiveSmallIntegerField(default=50, help_text="Higher is reviewed first.")
    # judge_below only: the judge's name; blank means any judge.
    judge_name = models.SlugField(max_length=80, blank=True)
    # random_sample only: the share of finished turns sampled, 0-1.
    sample_rate = models.FloatField(default=0.0)
    double_review = models.BooleanField(
        default=False, help_text="Items this rule flags are reviewed by two reviewers."
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-priority", "name"]

    def __str__(self) -> str:
        return self.name


class ReviewItem(models.Model):
    """A turn waiting for (or done with) human review. One per turn."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        DONE = "done", "Done"

    turn = models.OneToOneField("chatbot.Turn", on_delete=models.CASCADE, related_name="review")
    priority = models.PositiveSmallIntegerField(default=50)
    rule = models.ForeignKey(
        FlagRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="items"
    )
    # [{"rule": name, "kind": kind, "reason": words}, ...] for every rule that matched.
    reasons = models.JSONField(default=list, blank=True)
    reviews_needed = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-priority", "created_at"]
        indexes = [models.Index(fields=["status", "-priority", "created_at"])]

    def __str__(self) -> str:
        return f"Review item for turn {self.turn_id} ({self.status})"

    @property
    def reason(self) -> str:
        return "; ".join(r.get("reason", "") for r in self.reasons if isinstance(r, dict))


class ReviewAssignment(models.Model):
    """One reviewer's hold on one item. `active` holds expire, so abandoned work returns to the
    queue; `skipped` means this reviewer will not be offered the item again."""

    class Status(models.TextChoices):
        ACTIVE = "active", "In progress"
        SUBMITTED = "submitted", "Submitted"
        SKIPPED = "skipped", "Skipped"
        RELEASED = "released", "Released"

    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="assignments")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="review_assignments"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["item", "reviewer"], name="one_assignment_per_reviewer")
        ]
        indexes = [models.Index(fields=["reviewer", "status"])]

    def __str__(self) -> str:
        return f"{self.reviewer} on item {self.item_id} ({self.status})"


class Review(models.Model):
    """A reviewer's grades of one answer on the rubric (1-5 each), a corrected answer and the
    causes of the failure."""

    RUBRIC = ("accuracy", "completeness", "relevance", "tone", "safety")

    class Cause(models.TextChoices):
        RETRIEVAL_MISS = "retrieval_miss", "Retrieval miss"
        WRONG_SOURCE = "wrong_source", "Wrong source"
        HALLUCINATION = "hallucination", "Hallucination"
        TONE = "tone", "Tone"
        POLICY = "policy", "Policy"
        OTHER = "other", "Other"

    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="reviews")
    turn = models.ForeignKey("chatbot.Turn", on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reviews"
    )
    accuracy = models.PositiveSmallIntegerField()
    completeness = models.PositiveSmallIntegerField()
    relevance = models.PositiveSmallIntegerField()
    tone = models.PositiveSmallIntegerField()
    safety = models.PositiveSmallIntegerField()
    corrected_answer = models.TextField(blank=True)
    causes = models.JSONField(default=list, blank=True)
    comment = models.TextField(blank=True, max_length=4000)
    # The answer is good as it stands (usable for fine-tuning without a correction).
    approved = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["item", "reviewer"], name="one_review_per_reviewer"),
            *(
                models.CheckConstraint(
                    condition=models.Q(**{f"{name}__gte": 1, f"{name}__lte": 5}),
                    name=f"review_{name}_1_to_5",
                )
                for name in ("accuracy", "completeness", "relevance", "tone", "safety")
            ),
        ]
        indexes = [models.Index(fields=["turn"]), models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return f"Review of turn {self.turn_id} by {self.reviewer}"

    @property
    def grades(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.RUBRIC}
