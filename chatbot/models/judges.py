from __future__ import annotations

from decimal import Decimal

from django.db import models


class Judge(models.Model):
    """One version of an automatic judge. Judges are data: editing one makes a new version
    (`evaluation.services.judge_new_version`), so every score names the exact judge that made it."""

    class Kind(models.TextChoices):
        TOXICITY = "toxicity", "Toxicity (offline classifier)"
        PII = "pii", "Personal data in the answer"
        FORMAT = "format", "Format (citations, length, JSON)"
        FAITHFULNESS_LLM = "faithfulness_llm", "Faithfulness (LLM judge)"
        FAITHFULNESS_OVERLAP = "faithfulness_overlap", "Faithfulness (word overlap baseline)"
        RELEVANCE_LLM = "relevance_llm", "Answer relevance (LLM judge)"
        REWARD_MODEL = "reward_model", "Reward model (trained on human grades)"

    name = models.SlugField(max_length=80)
    version = models.PositiveIntegerField(default=1)
    kind = models.CharField(max_length=30, choices=Kind.choices)
    # LLM judges only; blank uses the catalogue default at the time the judge runs.
    endpoint = models.ForeignKey(
        "chatbot.ModelEndpoint",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="judges",
    )
    prompt_template = models.TextField(
        blank=True, help_text="LLM judges: uses {question}, {answer} and {context}."
    )
    scale = models.CharField(max_length=20, default="0-1")
    threshold = models.FloatField(default=0.5, help_text="A score under it flags the turn.")
    # Kind-specific settings (e.g. format's max_chars, pii's entities), versioned with the judge.
    options = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="one_judge_per_version")
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def is_llm(self) -> bool:
        return self.kind in {self.Kind.FAITHFULNESS_LLM, self.Kind.RELEVANCE_LLM}


class JudgeScore(models.Model):
    """What one judge version said about one turn. Scores run 0-1, 1 = good.

    `details` never holds personal data copied from the answer (PII findings keep types and
    positions only). The judge is PROTECTed: a version that has scored turns cannot be deleted,
    only disabled, so no score ever loses the definition that produced it.
    """

    class Status(models.TextChoices):
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    turn = models.ForeignKey("chatbot.Turn", on_delete=models.CASCADE, related_name="judge_scores")
    judge = models.ForeignKey(Judge, on_delete=models.PROTECT, related_name="scores")
    score = models.FloatField(null=True, blank=True)
    passed = models.BooleanField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal(0))
    duration_ms = models.FloatField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["turn", "judge__name"]
        constraints = [
            models.UniqueConstraint(fields=["turn", "judge"], name="one_score_per_turn_and_judge")
        ]
        indexes = [
            models.Index(fields=["judge", "created_at"]),
            models.Index(fields=["passed", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.judge} on turn {self.turn_id}: {self.score}"
