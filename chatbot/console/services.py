"""Writes for the admin console: the model catalogue and the agent's tools."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from chatbot.models import ModelEndpoint, ToolSetting


def endpoint_save(*, endpoint: ModelEndpoint | None, data: dict[str, Any]) -> ModelEndpoint:
    """Create or update a catalogue entry from validated form data."""
    target = endpoint or ModelEndpoint()
    for field, value in data.items():
        setattr(target, field, value)
    if not target.enabled:
        target.is_default = False
    target.save()
    return target


@transaction.atomic
def endpoint_set_default(*, endpoint: ModelEndpoint) -> None:
    """Exactly one default; a disabled endpoint cannot be it."""
    if not endpoint.enabled:
        raise ValueError("Enable the model before making it the default.")
    ModelEndpoint.objects.select_for_update().filter(is_default=True).exclude(
        pk=endpoint.pk
    ).update(is_default=False)
    ModelEndpoint.objects.filter(pk=endpoint.pk).update(is_default=True)


def tool_setting_save(*, setting: ToolSetting, data: dict[str, Any]) -> ToolSetting:
    """Save an admin's changes to a tool; the next turn reads them."""
    for field, value in data.items():
        setattr(setting, field, value)
    setting.save()
    return setting
