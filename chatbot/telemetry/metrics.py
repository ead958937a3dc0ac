"""Prometheus metrics for operations, served at /metrics.

Each web process (one daphne per replica) keeps its own counters; scrape every replica. Turn
metrics are observed once a production turn is saved (`turn_observe`, called by the turn loop;
replays are left out), request latency by `chatbot.telemetry.middleware`, and the Celery queue depth
is read from Redis at scrape time.

Access: a scraper sends `Authorization: Bearer <METRICS_TOKEN>`; with no token configured, or
without the header, only a signed-in admin (manage settings) may read it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import redis
from django.conf import settings
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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
# The answer cache (chatbot.agent.cache): hit rate is the "hit" share of lookups.
CACHE_LOOKUPS = Counter(
    "chatbot_cache_lookups",
    "Answer cache lookups by turns that may use the cache.",
    ["result", "match"],
)
CACHE_SAVED_TOKENS = Counter(
    "chatbot_cache_saved_tokens", "Model tokens the answers served from the cache had cost."
)
CACHE_SAVED_COST = Counter(
    "chatbot_cache_saved_cost_dollars", "What the answers served from the cache had cost."
)

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


def turn_observe(
    *,
    model: str,
    status: str,
    total_ms: float,
    ttft_ms: float | None,
    tokens_in: int,
    tokens_out: int,
    cost: float,
) -> None:
    """Count one saved production turn."""
    label = model or "none"
    TURNS.labels(label, status).inc()
    if status == "failed":
        TURN_ERRORS.labels(label).inc()
    TURN_SECONDS.labels(label, status).observe(total_ms / 1000)
    if ttft_ms is not None:
        TTFT_SECONDS.labels(label).observe(ttft_ms / 1000)
    TOKENS.labels(label, "input").inc(tokens_in)
    TOKENS.labels(label, "output").inc(tokens_out)
    COST.labels(label).inc(cost)


def cache_observe(*, match: str, saved_tokens: int, saved_cost: float) -> None:
    """Count one answer cache lookup: `match` is "exact" or "semantic" for a hit, "" a miss."""
    CACHE_LOOKUPS.labels("hit" if match else "miss", match or "none").inc()
    if match:
        CACHE_SAVED_TOKENS.inc(saved_tokens)
        CACHE_SAVED_COST.inc(saved_cost)
