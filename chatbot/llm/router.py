"""Choosing the endpoint for a turn. Simple now (requested, else default); the hybrid policy
(sensitivity, difficulty, cost) grows here without touching callers."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from chatbot.llm.types import EndpointConfig, NoModelAvailable
from chatbot.models import ModelEndpoint


@dataclass(frozen=True)
class Route:
    endpoint: EndpointConfig
    reason: str


def route_choose(*, requested: str | None = None) -> Route:
    # The catalogue is small: one query for all enabled entries, then choose in Python. This runs
    # before every model call, so it sits on the time-to-first-token path.
    enabled = list(ModelEndpoint.objects.filter(enabled=True).order_by("name"))
    by_name = {e.name: e for e in enabled}
    if requested:
        chosen = by_name.get(requested)
        if chosen is None:
            raise NoModelAvailable(
                f"The model '{requested}' does not exist or is disabled.",
                detail=f"requested endpoint {requested!r} not found",
            )
        return Route(EndpointConfig.from_model(chosen), "requested by the caller")
    default = next((e for e in enabled if e.is_default), None)
    if default is not None:
        return Route(EndpointConfig.from_model(default), "catalogue default")
    configured = by_name.get(settings.DEFAULT_MODEL_ENDPOINT)
    if configured is not None:
        return Route(EndpointConfig.from_model(configured), "configured default")
    if not enabled:
        raise NoModelAvailable(
            "No model is available right now. An admin needs to enable one.",
            detail="no enabled endpoint in the catalogue",
        )
    return Route(EndpointConfig.from_model(enabled[0]), "first enabled endpoint")
