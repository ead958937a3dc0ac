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
    enabled = ModelEndpoint.objects.filter(enabled=True)
    if requested:
        chosen = enabled.filter(name=requested).first()
        if chosen is None:
            raise NoModelAvailable(
                f"The model '{requested}' does not exist or is disabled.",
                detail=f"requested endpoint {requested!r} not found",
            )
        return Route(EndpointConfig.from_model(chosen), "requested by the caller")
    chosen = enabled.filter(is_default=True).first()
    if chosen is not None:
        return Route(EndpointConfig.from_model(chosen), "catalogue default")
    chosen = enabled.filter(name=settings.DEFAULT_MODEL_ENDPOINT).first()
    if chosen is not None:
        return Route(EndpointConfig.from_model(chosen), "configured default")
    chosen = enabled.order_by("name").first()
    if chosen is None:
        raise NoModelAvailable(
            "No model is available right now. An admin needs to enable one.",
            detail="no enabled endpoint in the catalogue",
        )
    return Route(EndpointConfig.from_model(chosen), "first enabled endpoint")
