"""Observability: hourly and daily rollups (the dashboard reads the daily ones), alert rules and
their firings, and replays of past turns. Raw facts stay on Turn, Span, JudgeScore, Feedback and
friends; everything here is derived from them (rollups) or describes work done on them (alerts,
replays)."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models

# Upper bounds (ms) of the latency histogram buckets kept in the rollups. Bucket k holds values in
# [bound[k-1], bound[k]), as Postgres' width_bucket counts them; the last bucket is open-ended.
# p50/p95 over any filter are read from the summed buckets, so their precision is a bucket.
LATENCY_BOUNDS_MS: tuple[int, ...] = (
    50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000, 15000, 20000,
    30000, 60000,
)  # fmt: skip
LATENCY_BUCKETS = len(LATENCY_BOUNDS_MS) + 1


def _empty_histogram() -> list[int]:
    return [0] * LATENCY_BUCKETS


class RollupColumns(models.Model):
    """The keys and sums of a rollup row: finished production turns of one period, summed per
    (model, route, channel, group, collection). The hourly and the daily table share them."""

    endpoint = models.ForeignKey(
        "chatbot.ModelEndpoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    route = models.CharField(max_length=120, blank=True)
    channel = models.CharField(max_length=10)
    group = models.ForeignKey(
        "auth.Group", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    collection = models.ForeignKey(
        "chatbot.Collection", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    turns = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    cancelled = models.PositiveIntegerField(default=0)
    no_answer = models.PositiveIntegerField(default=0)
    # Answered from the knowledge base or the model, not escalated and not thumbed down.
    succeeded = models.PositiveIntegerField(default=0)
    tokens_in = models.PositiveBigIntegerField(default=0)
    tokens_out = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=18, decimal_places=8, default=Decimal(0))
    ttft_count = models.PositiveIntegerField(default=0)
    ttft_sum_ms = models.FloatField(default=0)
    ttft_hist = ArrayField(models.PositiveIntegerField(), default=_empty_histogram)
    total_count = models.PositiveIntegerField(default=0)
    total_sum_ms = models.FloatField(default=0)
    total_hist = ArrayField(models.PositiveIntegerField(), default=_empty_histogram)
    thumbs_up = models.PositiveIntegerField(default=0)
    thumbs_down = models.PositiveIntegerField(default=0)
    escalations = models.PositiveIntegerField(default=0)
    judged = models.PositiveIntegerField(default=0)
    judge_flagged = models.PositiveIntegerField(default=0)
    toxicity_flagged = models.PositiveIntegerField(default=0)
    pii_flagged = models.PositiveIntegerField(default=0)
    reviews = models.PositiveIntegerField(default=0)
    review_grade_sum = models.PositiveIntegerField(default=0)
    flagged = models.PositiveIntegerField(default=0)
    # The answer cache: turns that looked, turns answered from it, and what those saved.
    cache_lookups = models.PositiveIntegerField(default=0)
    cache_hits = models.PositiveIntegerField(default=0)
    saved_tokens = models.PositiveBigIntegerField(default=0)
    saved_cost = models.DecimalField(max_digits=18, decimal_places=8, default=Decimal(0))
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class TurnRollup(RollupColumns):
    """Finished production turns of one hour, summed per (model, route, channel, group, collection).

    Recomputed whole for every hour something changed in (`observability.rollups`), so a row is
    always exactly what the raw tables say for its key. Replays are never counted. The group is the
    asker's team: their first group by name that is not a role (agent, reviewer, admin), else
    their role; the collection is the one the answer's top source came from.
    """

    hour = models.DateTimeField()

    class Meta:
        ordering = ["hour"]
        indexes = [
            models.Index(fields=["hour"]),
            # The dashboard's route filter lists the routes seen, a few probes of this index.
            models.Index(fields=["route"], name="turnrollup_route"),
        ]

    def __str__(self) -> str:
        return f"rollup {self.hour:%Y-%m-%d %H}:00 ({self.turns} turns)"


class TurnRollupDay(RollupColumns):
    """The hourly rollups of one UTC day summed per key: what the dashboard reads for its date
    range (a day is 24 hourly rows per key; 180 days of hourly rows took 500 ms to sum at 1M
    turns). Recomputed from `TurnRollup` for every day one of its hours was (`observability.rollups`),
    in the same transaction, so it always equals the sum of its hours."""

    day = models.DateField()

    class Meta:
        ordering = ["day"]
        indexes = [models.Index(fields=["day"], name="turnrollupday_day")]

    def __str__(self) -> str:
        return f"daily rollup {self.day:%Y-%m-%d} ({self.turns} turns)"


class UserDay(models.Model):
    """One person asked something on one day (production turns only): active and returning users
    cannot be summed from hourly counts, so they get their own small table."""

    day = models.DateField()
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    turns = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["day"]
        constraints = [models.UniqueConstraint(fields=["day", "user"], name="one_user_day")]

    def __str__(self) -> str:
        return f"{self.user_id} on {self.day}"


class RollupRun(models.Model):
    """One pass of the rollup task; the last successful one's `until` is where the next starts."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    since = models.DateTimeField(null=True, blank=True)
    until = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    hours = models.PositiveIntegerField(default=0)
    duration_ms = models.FloatField(default=0)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["status", "-until"])]

    def __str__(self) -> str:
        return f"rollup run until {self.until} ({self.status})"


class AlertRule(models.Model):
    """A threshold an admin sets on a production metric, checked every minute over a window."""

    class Metric(models.TextChoices):
        LATENCY_P95 = "latency_p95", "p95 total latency (ms)"
        TTFT_P95 = "ttft_p95", "p95 time to first token (ms)"
        ERROR_RATE = "error_rate", "Error rate (share of turns that failed)"
        COST_PER_DAY = "cost_per_day", "Cost per day (spend in the window, per 24 h)"
        FLAGGED_SHARE = "flagged_share", "Flagged share (turns sent to review)"

    class State(models.TextChoices):
        OK = "ok", "OK"
        FIRING = "firing", "Firing"

    name = models.CharField(max_length=100, unique=True)
    metric = models.CharField(max_length=20, choices=Metric.choices)
    threshold = models.FloatField(help_text="The rule fires when the metric goes above this.")
    window_minutes = models.PositiveIntegerField(default=60)
    min_turns = models.PositiveIntegerField(
        default=20, help_text="Fewer turns than this in the window are not enough to judge."
    )
    webhook_url = models.URLField(max_length=500, blank=True)
    enabled = models.BooleanField(default=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.OK)
    last_value = models.FloatField(null=True, blank=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AlertFiring(models.Model):
    """A rule crossed its threshold: recorded once per crossing, with the webhook's delivery."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="firings")
    value = models.FloatField()
    threshold = models.FloatField()
    turns = models.PositiveIntegerField(default=0)
    fired_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    delivered = models.BooleanField(default=False)
    delivered_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-fired_at"]
        indexes = [models.Index(fields=["rule", "-fired_at"])]

    def __str__(self) -> str:
        return f"{self.rule} fired at {self.fired_at} ({self.value:g})"


class Replay(models.Model):
    """A past turn, or a whole conversation, asked again against another model endpoint, system
    prompt or the current knowledge base. The new turns live in `conversation` (flagged as a
    replay, so kept out of the asker's list and of production metrics), each naming its original
    in `Turn.replay_of`."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    source_turn = models.ForeignKey(
        "chatbot.Turn",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="replay_jobs",
    )
    source_conversation = models.ForeignKey(
        "chatbot.Conversation",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="replay_jobs",
    )
    # Blank: the endpoint the router would choose today.
    endpoint = models.ForeignKey(
        "chatbot.ModelEndpoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Blank: the product's default system prompt.
    system_prompt = models.TextField(blank=True, max_length=8000)
    # Retrieve from the knowledge base as it was when the original turn ran (its
    # `Turn.kb_versions`) instead of as it is now.
    kb_as_of_original = models.BooleanField(default=False)
    conversation = models.ForeignKey(
        "chatbot.Conversation",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    total = models.PositiveIntegerField(default=0)
    completed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(source_turn__isnull=False)
                | models.Q(source_conversation__isnull=False),
                name="replay_has_a_source",
            )
        ]

    def __str__(self) -> str:
        return f"Replay {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.DONE, self.Status.FAILED}
