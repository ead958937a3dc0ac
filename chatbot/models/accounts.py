from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone

from chatbot.models.compliance import regions_field


class Capability(models.Model):
    """Holds the product's permissions; roles are groups that are granted some of them.

    No table: it exists so the permissions have a content type to hang off.
    """

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("use_chat", "Can chat with the assistant"),
            ("view_knowledge", "Can search and read the knowledge base"),
            ("manage_knowledge", "Can manage knowledge-base sources"),
            ("review_answers", "Can review answers"),
            ("view_dashboard", "Can read the dashboard and traces"),
            ("manage_settings", "Can manage models, routing, policies and users"),
        ]

    def __str__(self) -> str:
        return "capability"


class ApiKey(models.Model):
    """A key for programs. Only a hash of the secret is stored; the prefix finds the row.

    A key reaches only the endpoints its scopes name (a session in the browser is not limited by
    scopes: it is the person themself), and none once expired or revoked.
    """

    class Scope(models.TextChoices):
        CHAT = "chat", "Chat (conversations, answers, /v1)"
        SEARCH = "search", "Search the knowledge base"
        READ_ONLY = "read_only", "Read only (GET endpoints)"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100, default="default")
    prefix = models.CharField(max_length=16, unique=True)
    hashed_secret = models.CharField(max_length=64)
    scopes = ArrayField(models.CharField(max_length=16, choices=Scope.choices), default=list)
    expires_at = models.DateTimeField(null=True, blank=True)
    # Requests a minute for this key; None: the RATE_LIMIT_PER_MINUTE setting.
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True)
    # What is asked with this key goes only to models in these regions (empty: any).
    allowed_regions = regions_field()
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} {self.prefix}… ({self.user})"

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def usable(self) -> bool:
        return self.revoked_at is None and not self.expired
