"""Reports derived from production: the weekly report (stored once per week, posted to a webhook)
and the hourly retrieval rollup the dashboard's drift panel and the report read.

Both are derived data: recomputing them from the raw tables replaces the rows, never adds to them.
"""

from __future__ import annotations

from datetime import date, timedelta

from django.db import models


class WeeklyReport(models.Model):
    """One ISO week (Monday to Sunday, in the site's time zone) of production, with the same
    figures for the week before and the change between them (`observability.weekly`).

    Unique per week: computing a week again updates its row. `figures` is plain JSON (numbers,
    strings, lists), so the page, the webhook and a later reader all see exactly what was stored.
    """

    class Delivery(models.TextChoices):
        NONE = "", "Not posted"
        SENDING = "sending", "Posting"
        DELIVERED = "delivered", "Posted"
        FAILED = "failed", "Posting failed"

    week_start = models.DateField(unique=True)
    # The zone the week's days were cut in (settings.TIME_ZONE when it was computed).
    time_zone = models.CharField(max_length=64)
    figures = models.JSONField(default=dict, blank=True)
    # The report in a few plain-text lines: the webhook's "text" and the page's summary.
    summary = models.TextField(blank=True)
    computed_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    delivery = models.CharField(
        max_length=10, choices=Delivery.choices, default=Delivery.NONE, blank=True
    )
    delivered_at = models.DateTimeField(null=True, blank=True)
    delivery_attempts = models.PositiveSmallIntegerField(default=0)
    delivery_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-week_start"]

    def __str__(self) -> str:
        return f"weekly report {self.label}"

    @property
    def week_end(self) -> date:
        """The week's last day (a Sunday)."""
        return self.week_start + timedelta(days=6)

    @property
    def label(self) -> str:
        year, week, _ = self.week_start.isocalendar()
        return f"{year}-W{week:02d}"


class RetrievalRollup(models.Model):
    """Retrieval of finished production turns in one hour (UTC), per collection of the passage
    with the top similarity: the inputs of the drift panel (mean top similarity, no-answer rate,
    share of questions whose passages nobody cited).

    Recomputed with `TurnRollup` for every hour something changed in
    (`observability.rollups.hours_recompute` calls `observability.drift`), so it is always what the
    raw tables say. Only turns with a retrieval span count; `collection` is null when retrieval
    returned no passage at all.
    """

    hour = models.DateTimeField()
    collection = models.ForeignKey(
        "chatbot.Collection", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    # Turns that retrieved.
    turns = models.PositiveIntegerField(default=0)
    # Sum and count of the top passage's similarity (a turn without similarities adds nothing).
    similarity_sum = models.FloatField(default=0)
    similarity_count = models.PositiveIntegerField(default=0)
    # Answered "I don't know" for lack of sources.
    no_answer = models.PositiveIntegerField(default=0)
    # Given numbered passages, and of those, citing none of them.
    with_passages = models.PositiveIntegerField(default=0)
    uncited = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["hour"]
        indexes = [models.Index(fields=["hour"])]

    def __str__(self) -> str:
        return f"retrieval {self.hour:%Y-%m-%d %H}:00, collection {self.collection_id}"
