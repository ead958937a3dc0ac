"""Reads the API needs that no other area offers yet."""

from __future__ import annotations

from django.db.models import QuerySet

from chatbot.models import ModelEndpoint


def endpoints_enabled() -> QuerySet[ModelEndpoint]:
    """The catalogue entries callers may ask for by name, in a stable order."""
    return ModelEndpoint.objects.filter(enabled=True).order_by("name")
