from __future__ import annotations

from django.conf import settings
from django.db import models


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
    """A key for programs. Only a hash of the secret is stored; the prefix finds the row."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100, default="default")
    prefix = models.CharField(max_length=16, unique=True)
    hashed_secret = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"
