"""Choosing the endpoint for a turn: the requested one, else the default. Admin-edited rules
(sensitivity, task, difficulty, budget, availability) refine that per step of a turn: see
`chatbot.llm.routing` (the pure evaluation) and `chatbot.agent.routing` (the facts it reads)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from chatbot.llm.types import EndpointConfig, NoModelAvailable
from chatbot.models import ModelEndpoint


@dataclass(frozen=True)
class Route:
    endpoint: EndpointConfig
    reason: str
    # The availability rule's plan: retries of each endpoint, then the next of `fallbacks`.
    fallbacks: tuple[EndpointConfig, ...] = ()
    retries: int = 0
    backoff_s: float = 0.0
    # Seconds to wait for the first piece of text before giving up on an attempt (0: the
    # client's own timeout, settings.MODEL_REQUEST_TIMEOUT_S).
    first_token_timeout_s: float = 0.0
    # Each rule's verdict, as the trace shows it; empty when no rule is enabled.
    verdicts: tuple[dict[str, Any], ...] = ()


def catalogue_enabled() -> tuple[list[EndpointConfig], int | None]:
    """The enabled entries by name, and the default's id."""
    # The catalogue is small: one query for all enabled entries, then choose in Python. This runs
    # before every model call, so it sits on the time-to-first-token path.
    rows = list(ModelEndpoint.objects.filter(enabled=True).order_by("name"))
    default_id = next((e.pk for e in rows if e.is_default), None)
    return [EndpointConfig.from_model(e) for e in rows], default_id


def endpoint_default(enabled: Sequence[EndpointConfig], default_id: int | None) -> Route:
    """The catalogue default, the configured default, or the first enabled entry."""
    by_id = {e.id: e for e in enabled}
    if default_id is not None and default_id in by_id:
        return Route(by_id[default_id], "catalogue default")
    configured = next((e for e in enabled if e.name == settings.DEFAULT_MODEL_ENDPOINT), None)
    if configured is not None:
        return Route(configured, "configured default")
    if not enabled:
        raise NoModelAvailable(
            "No model is available right now. An admin needs to enable one.",
            detail="no enabled endpoint in the catalogue",
        )
    return Route(enabled[0], "first enabled endpoint")


def endpoint_requested(enabled: Sequence[EndpointConfig], requested: str) -> Route:
    chosen = next((e for e in enabled if e.name == requested), None)
    if chosen is None:
        raise NoModelAvailable(
            f"The model '{requested}' does not exist or is disabled.",
            detail=f"requested endpoint {requested!r} not found",
        )
    return Route(chosen, "requested by the caller")


def route_choose(*, requested: str | None = None) -> Route:
    enabled, default_id = catalogue_enabled()
    if requested:
        return endpoint_requested(enabled, requested)
    return endpoint_default(enabled, default_id)
