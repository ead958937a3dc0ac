from __future__ import annotations

from decimal import Decimal

from django.db import models

# Landis and Koch's "fair" agreement: a judge under it agrees with the human reviewers little
# better than chance (`evaluation.review.agreement`), and its failures flag nothing.
TRUST_MIN_KAPPA = 0.4


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
        POLICY_LLM = "policy_llm", "Policy violations (LLM judge)"
        HELPFULNESS_LLM = "helpfulness_llm", "Helpfulness (LLM judge)"
        READABILITY_LLM = "readability_llm", "Readability (LLM judge)"

    class Trust(models.TextChoices):
        """How far the judge agrees with human reviewers (`evaluation.review.agreement`)."""

        TRUSTED = "trusted", "Trusted"
        UNTRUSTWORTHY = "untrustworthy", "Untrustworthy"
        TOO_FEW = "too_few", "Not enough reviews yet"
        NO_VARIATION = "no_variation", "No disagreement to measure yet"

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
    # Agreement with the humans, stored so flagging reads it with the score instead of computing
    # kappa per turn. Kept the same on every version of a name (kappa is per judge name, each
    # reviewed turn taking its newest version's verdict); refreshed after each review and by a
    # periodic job (`evaluation.review.agreement.judge_trust_refresh`).
    trust_kappa = models.FloatField(null=True, blank=True)
    trust_pairs = models.PositiveIntegerField(default=0)
    trust_state = models.CharField(max_length=20, choices=Trust.choices, default=Trust.TOO_FEW)
    trust_checked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="one_judge_per_version")
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def is_llm(self) -> bool:
        return self.kind in LLM_KINDS

    @property
    def is_untrustworthy(self) -> bool:
        return self.trust_state == self.Trust.UNTRUSTWORTHY


# The judges that ask a model: they need a capable one (`ModelEndpoint.capable_judge`).
LLM_KINDS = frozenset(
    {
        Judge.Kind.FAITHFULNESS_LLM,
        Judge.Kind.RELEVANCE_LLM,
        Judge.Kind.POLICY_LLM,
        Judge.Kind.HELPFULNESS_LLM,
        Judge.Kind.READABILITY_LLM,
    }
)


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
    # Why this failing score did not put the turn in the review queue (its judge was
    # untrustworthy when the turn was flagged); blank when it counted.
    flag_ignored = models.CharField(max_length=300, blank=True)
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


class JudgePolicy(models.Model):
    """A rule the company's answers must follow, written by an admin in plain language. The
    policy judge asks a capable model whether an answer breaks any enabled one."""

    name = models.CharField(max_length=120, unique=True)
    rule = models.TextField(help_text="In plain language, as you would tell a new colleague.")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
