"""Prometheus metrics for operations, served at /metrics.

Each web process (one daphne per replica) keeps its own counters; scrape every replica. Turn
metrics are observed once a production turn is saved (`turn_observe`, called by the turn loop;
replays are left out), request latency by `observability.middleware`, and the Celery queue depth
is read from Redis at scrape time.

Access: a scraper sends `Authorization: Bearer <METRICS_TOKEN>`; with no token configured, or
without the header, only a signed-in admin (manage settings) may read it.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator
from typing import Any

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from chatbot.accounts import roles
from chatbot.accounts.access import no_access

logger = logging.getLogger(__name__)

SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120)

REQUEST_SECONDS = Histogram(
    "chatbot_http_request_duration_seconds",
    "Time to answer an HTTP request (to the first byte of a streamed response).",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TURN_SECONDS = Histogram(
    "chatbot_turn_duration_seconds",
    "Time from the start of a turn to its last token.",
    ["model", "status"],
    buckets=SECONDS,
)
TTFT_SECONDS = Histogram(
    "chatbot_turn_ttft_seconds", "Time to the first token of an answer.", ["model"], buckets=SECONDS
)
TURNS = Counter("chatbot_turns", "Finished turns.", ["model", "status"])
TURN_ERRORS = Counter("chatbot_turn_errors", "Turns that failed.", ["model"])
TOKENS = Counter(
    "chatbot_tokens", "Tokens sent to and received from models.", ["model", "direction"]
)
COST = Counter("chatbot_cost_dollars", "What the models cost, in dollars.", ["model"])
CACHE_LOOKUPS = Counter("chatbot_cache_lookups", "Cache lookups by turns.", ["result"])

# kombu's Redis transport keeps one list per priority step beside the queue's own.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


class QueueDepth(Collector):
    """Messages waiting in the Celery queue, read from the broker at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "chatbot_celery_queue_depth", "Tasks waiting in the Celery queue.", labels=["queue"]
        )
        queue = settings.CELERY_TASK_DEFAULT_QUEUE
        prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")
        try:
            client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=1)
            depth = sum(int(client.llen(f"{prefix}{queue}{s}")) for s in _PRIORITY_SUFFIXES)
        except redis.RedisError as exc:
            logger.warning("queue depth unavailable: %s", exc)
            return
        gauge.add_metric([queue], depth)
        yield gauge


REGISTRY.register(QueueDepth())


def turn_observe(*, result: Any, model: str, tracer: Any) -> None:
    """Count one saved production turn (a `chatbot.chat.services.TurnResult`) and its spans."""
    label = model or "none"
    TURNS.labels(label, result.status).inc()
    if result.status == "failed":
        TURN_ERRORS.labels(label).inc()
    TURN_SECONDS.labels(label, result.status).observe(result.total_ms / 1000)
    if result.ttft_ms is not None:
        TTFT_SECONDS.labels(label).observe(result.ttft_ms / 1000)
    TOKENS.labels(label, "input").inc(result.usage.input_tokens)
    TOKENS.labels(label, "output").inc(result.usage.output_tokens)
    COST.labels(label).inc(float(result.cost))
    for record in tracer.records:
        if record.kind == "cache":
            CACHE_LOOKUPS.labels("hit" if record.attributes.get("hit") is True else "miss").inc()


def _bearer(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = _bearer(request)
    expected = settings.METRICS_TOKEN
    allowed = bool(token and expected and hmac.compare_digest(token, expected))
    if not allowed and token:
        return HttpResponse("Wrong metrics token.\n", status=401, content_type="text/plain")
    if not allowed:
        if not request.user.is_authenticated:
            response = HttpResponse(
                "Send the metrics token as 'Authorization: Bearer <token>', or sign in as an admin.\n",
                status=401,
                content_type="text/plain",
            )
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
        if not request.user.has_perm(roles.MANAGE_SETTINGS):
            return no_access(request)
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
