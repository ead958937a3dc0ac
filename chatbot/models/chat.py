from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models


class Conversation(models.Model):
    class Channel(models.TextChoices):
        WEB = "web", "Web"
        API = "api", "API"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.WEB)
    # Holds the turns of a replay (observability): never listed among the owner's conversations.
    is_replay = models.BooleanField(default=False)
    # Deleted by its owner while turns in it are escalated, reviewed or in a dataset: kept for
    # those, never shown to the owner again (`chatbot.chat.services.conversation_delete`).
    hidden_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["owner", "-updated_at"])]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"


class Turn(models.Model):
    """One question and its answer: the spine everything else hangs off."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        STREAMING = "streaming", "Streaming"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="turns")
    user_text = models.TextField()
    answer = models.TextField(blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    endpoint = models.ForeignKey(
        "chatbot.ModelEndpoint",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="turns",
    )
    route_reason = models.CharField(max_length=200, blank=True)
    # The published system prompt the answer was built with; null: the caller's own (the API, a
    # replay) or a turn from before prompts were versioned.
    prompt_version = models.ForeignKey(
        "chatbot.PromptVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="turns",
    )
    # The published answer instructions the passages were framed with; null: no passages were
    # sent, or a turn from before they were versioned.
    answer_version = models.ForeignKey(
        "chatbot.PromptVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    tokens_estimated = models.BooleanField(default=False)
    cost = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal(0))
    ttft_ms = models.FloatField(null=True, blank=True)
    total_ms = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    # True when retrieval found nothing relevant enough and the assistant said it doesn't know.
    no_answer = models.BooleanField(default=False)
    # {collection id: version} of every collection the turn could read, at the moment it read.
    kb_versions = models.JSONField(default=dict, blank=True)
    # Personal data replaced by placeholders before text left for a model that may not see it
    # (chatbot.compliance.redact): {entity type: count}, never the values; {} when nothing was.
    redacted = models.JSONField(default=dict, blank=True)
    # The online A/B test variant the turn was answered under (null: no test ran, or a replay).
    ab_variant = models.ForeignKey(
        "chatbot.ABVariant", null=True, blank=True, on_delete=models.SET_NULL, related_name="turns"
    )
    # A replay re-asks a past turn (observability.replay): kept out of production metrics. Deleting
    # the original deletes its replays, since they repeat the person's question.
    is_replay = models.BooleanField(default=False)
    replay_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="replays"
    )

    # The answer cache (chatbot.agent.cache): "" when the turn did not look (a tool's answer, a
    # follow-up, a replay, the cache off), else what the lookup found. A hit names the turn whose
    # answer it repeated and what that answer cost, i.e. what the hit saved; dashboards count
    # hits apart, and comparisons of models or prompts leave them out.
    class Cache(models.TextChoices):
        NONE = "", "Not looked up"
        MISS = "miss", "Miss"
        EXACT = "exact", "Exact hit"
        SEMANTIC = "semantic", "Semantic hit"

    cache_result = models.CharField(max_length=10, choices=Cache.choices, blank=True, default="")
    cached_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="cache_copies"
    )
    saved_tokens = models.PositiveIntegerField(default=0)
    saved_cost = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal(0))
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["conversation", "created_at"]),
            models.Index(fields=["status", "created_at"]),
            models.Index(fields=["created_at"]),
        ]

    def __str__(self) -> str:
        return f"Turn {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.DONE, self.Status.FAILED, self.Status.CANCELLED}

    @property
    def escalation_or_none(self) -> Escalation | None:
        try:
            return self.escalation
        except Escalation.DoesNotExist:
            return None

    @property
    def answer_cites_any(self) -> bool:
        """Whether the answer cited any of its sources (uses prefetched citations)."""
        return any(c.cited for c in self.citations.all())


class Feedback(models.Model):
    class Rating(models.IntegerChoices):
        DOWN = -1, "Thumbs down"
        UP = 1, "Thumbs up"

    turn = models.ForeignKey(Turn, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="feedback"
    )
    rating = models.SmallIntegerField(choices=Rating.choices)
    comment = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["turn", "user"], name="one_feedback_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.get_rating_display()} on turn {self.turn_id}"


class Citation(models.Model):
    """A chunk given to the model as numbered context [number]; `cited` when the answer used it.

    Re-ingesting a changed document retires a cited chunk instead of deleting it, so a past
    answer keeps the passage it was given (`chatbot.knowledge.ingest`). Deleting a source deletes
    its chunks and, through them, these rows: nothing derived from a deleted source survives.
    """

    turn = models.ForeignKey(Turn, on_delete=models.CASCADE, related_name="citations")
    chunk = models.ForeignKey("chatbot.Chunk", on_delete=models.CASCADE, related_name="citations")
    number = models.PositiveSmallIntegerField()
    score = models.FloatField()
    similarity = models.FloatField(null=True, blank=True)
    cited = models.BooleanField(default=False)

    class Meta:
        ordering = ["turn", "number"]
        constraints = [
            models.UniqueConstraint(fields=["turn", "number"], name="one_citation_per_number")
        ]

    def __str__(self) -> str:
        return f"[{self.number}] of turn {self.turn_id}"


class Escalation(models.Model):
    """A person asked for a human to take over a turn ("needs a human"). A reviewer or admin
    claims it in the escalation inbox, answers (the reply appears in the asker's conversation as
    it is sent) and resolves it."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLAIMED = "claimed", "Claimed"
        ANSWERED = "answered", "Answered"
        RESOLVED = "resolved", "Resolved"

    turn = models.OneToOneField(Turn, on_delete=models.CASCADE, related_name="escalation")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="escalations"
    )
    reason = models.TextField(blank=True, max_length=2000)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="escalations_claimed",
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    # The human's reply to the asker, shown under the turn in their conversation.
    answer = models.TextField(blank=True)
    answered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="escalations_answered",
    )
    answered_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="escalations_resolved",
    )
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"Escalation of turn {self.turn_id} ({self.status})"
