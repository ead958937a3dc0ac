"""The audit log: who did what, when, from where. Append-only: Postgres itself refuses to update
or delete a row (a trigger, migration 0025), and the product offers no way to; the person is kept
by id and name, not by a foreign key, so deleting a person later changes no entry."""

from __future__ import annotations

from django.db import models


class AuditEntry(models.Model):
    class Category(models.TextChoices):
        ADMIN = "admin", "Admin action"
        READ = "read", "Sensitive read"
        SIGN_IN = "sign_in", "Sign-in"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    category = models.CharField(max_length=10, choices=Category.choices)
    # A dotted name from `chatbot.telemetry.audit.ACTIONS`, e.g. "endpoint.default".
    action = models.CharField(max_length=60)
    actor_id = models.BigIntegerField(null=True, blank=True)  # null: nobody signed in
    actor_name = models.CharField(max_length=150, blank=True)
    # What the action was on: a model label and primary key, and a few words naming it then.
    target_type = models.CharField(max_length=60, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField(max_length=200, blank=True)
    details = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    request_path = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["action", "-created_at"]),
            models.Index(fields=["actor_id", "-created_at"]),
            models.Index(fields=["target_type", "target_id"]),
        ]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_name or '-'} {self.action}"
