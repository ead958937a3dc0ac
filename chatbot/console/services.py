"""Writes for the admin console: the model catalogue, the agent's tools and the routing rules."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from chatbot.models import Collection, ModelEndpoint, RoutingRule, ToolSetting


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


def routing_rule_save(*, rule: RoutingRule | None, data: dict[str, Any]) -> RoutingRule:
    """Create (at the end of the list) or update a routing rule from validated form data; the
    next step of any turn reads it."""
    target = rule or RoutingRule(order=_routing_next_order())
    for field, value in data.items():
        setattr(target, field, value)
    target.save()
    return target


def _routing_next_order() -> int:
    last = RoutingRule.objects.order_by("-order").values_list("order", flat=True).first()
    return (last or 0) + 1


@transaction.atomic
def routing_rule_move(*, rule: RoutingRule, direction: str) -> bool:
    """Swap `rule` with its neighbour ("up" or "down"); False at either end. The list is locked
    and renumbered 1..n, so two admins moving rules at once cannot tie two orders."""
    rules = list(RoutingRule.objects.select_for_update().order_by("order", "pk"))
    at = next(i for i, r in enumerate(rules) if r.pk == rule.pk)
    to = at - 1 if direction == "up" else at + 1
    if direction not in {"up", "down"} or not 0 <= to < len(rules):
        return False
    rules[at], rules[to] = rules[to], rules[at]
    for number, moved in enumerate(rules, start=1):
        moved.order = number
    RoutingRule.objects.bulk_update(rules, ["order"])
    return True


def routing_rule_set_enabled(*, rule: RoutingRule, enabled: bool) -> None:
    rule.enabled = enabled
    rule.save(update_fields=["enabled", "updated_at"])


def routing_rule_delete(*, rule: RoutingRule) -> None:
    rule.delete()


def collection_set_confidential(*, collection: Collection, confidential: bool) -> None:
    """Mark a collection's passages confidential: sensitivity rules then limit where they go."""
    collection.confidential = confidential
    collection.save(update_fields=["confidential", "updated_at"])
