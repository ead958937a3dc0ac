"""Fine-tuning jobs and the gated promotion of what they produce.

A job trains a model from one training export (supervised rows or preference pairs) on a backend
(local PEFT/TRL, or a hosted OpenAI-compatible fine-tuning API) and registers the result in the
catalogue as a new `ModelEndpoint`; the job row is that endpoint's lineage. A promotion takes a
fine-tuned endpoint towards being the default: an offline experiment against the default of the
day, then an online A/B test, then the switch, which one click rolls back.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class FineTuneJob(models.Model):
    class Method(models.TextChoices):
        SFT = "sft", "Supervised fine-tuning (LoRA)"
        DPO = "dpo", "Preference pairs (DPO with LoRA)"

    class Backend(models.TextChoices):
        LOCAL = "local", "Local: PEFT and TRL on a Hugging Face model directory"
        HOSTED = "hosted", "Hosted: an OpenAI-compatible fine-tuning API"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    export = models.ForeignKey(
        "chatbot.Export", on_delete=models.PROTECT, related_name="finetune_jobs"
    )
    method = models.CharField(max_length=10, choices=Method.choices)
    backend = models.CharField(max_length=10, choices=Backend.choices, default=Backend.LOCAL)
    # Local: a model directory on the training machine. Hosted: the provider's model name.
    base_model = models.CharField(max_length=500)
    # Hosted: the catalogue entry whose base URL and API key the fine-tuning API is reached with.
    hosted_via = models.ForeignKey(
        "chatbot.ModelEndpoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    hyperparameters = models.JSONField(default=dict, blank=True)
    # sha256 of everything above: the same request twice finds the first job.
    fingerprint = models.CharField(max_length=64)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    cancel_requested = models.BooleanField(default=False)
    steps_done = models.PositiveIntegerField(default=0)
    steps_total = models.PositiveIntegerField(default=0)
    log = models.TextField(blank=True)
    # [{"step": n, "train": loss or null, "validation": loss or null}, ...]
    losses = models.JSONField(default=list, blank=True)
    # What it was made from: the export (kind, rows, file digest, knowledge-base versions), rows
    # used for training and validation, the base model's own lineage when it was fine-tuned.
    lineage = models.JSONField(default=dict, blank=True)
    # Local: the trained model's directory (relative to FINETUNE_DIR).
    output_dir = models.CharField(max_length=500, blank=True)
    hosted_job_id = models.CharField(max_length=200, blank=True)
    endpoint = models.OneToOneField(
        "chatbot.ModelEndpoint",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="finetune_job",
    )
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="finetune_jobs",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["fingerprint"],
                condition=~models.Q(status__in=["failed", "cancelled"]),
                name="one_live_finetune_job_per_request",
            )
        ]

    def __str__(self) -> str:
        return f"fine-tuning job {self.pk} ({self.method}, {self.status})"

    @property
    def percent(self) -> int:
        return int(100 * self.steps_done / self.steps_total) if self.steps_total else 0

    @property
    def finished(self) -> bool:
        return self.status in {self.Status.DONE, self.Status.FAILED, self.Status.CANCELLED}


class Promotion(models.Model):
    """A fine-tuned endpoint's way to the default, one gate after the other."""

    class Status(models.TextChoices):
        OFFLINE = "offline", "Offline experiment running"
        LOST = "lost", "Lost the offline experiment"
        ONLINE = "online", "Online A/B test"
        PROMOTED = "promoted", "Promoted"
        ROLLED_BACK = "rolled_back", "Rolled back"

    endpoint = models.ForeignKey(
        "chatbot.ModelEndpoint", on_delete=models.CASCADE, related_name="promotions"
    )
    # The default when the promotion started: what it is compared with and rolled back to.
    baseline = models.ForeignKey(
        "chatbot.ModelEndpoint", null=True, on_delete=models.SET_NULL, related_name="+"
    )
    dataset = models.ForeignKey("chatbot.Dataset", on_delete=models.PROTECT, related_name="+")
    candidate_experiment = models.ForeignKey(
        "chatbot.Experiment", null=True, on_delete=models.SET_NULL, related_name="+"
    )
    baseline_experiment = models.ForeignKey(
        "chatbot.Experiment", null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Null until both experiments finished; then whether the candidate lost on no score.
    offline_passed = models.BooleanField(null=True)
    # {"scores": [{"label", "baseline": [mean, low, high], "candidate": [...],
    #  "difference": [mean, low, high], "n", "lost"}], "lost": [labels]}
    verdict = models.JSONField(default=dict, blank=True)
    abtest = models.ForeignKey(
        "chatbot.ABTest", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OFFLINE)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    promoted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    promoted_at = models.DateTimeField(null=True, blank=True)
    rolled_back_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rolled_back_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint"],
                condition=models.Q(status__in=["offline", "online"]),
                name="one_open_promotion_per_endpoint",
            )
        ]

    def __str__(self) -> str:
        return f"promotion of {self.endpoint} ({self.status})"
