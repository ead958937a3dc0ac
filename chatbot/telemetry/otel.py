"""Optional OpenTelemetry export of turn traces over OTLP/HTTP.

Off unless `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set. Spans are handed to the SDK's batch
processor after the database commit, so exporting never holds up a chat: a background thread
sends them. Every span of a turn (the turn's own and its judges', which run later) shares one
trace id derived from the turn id, so a tracing backend shows them together.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from chatbot.telemetry.tracing import SpanRecord

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_providers: dict[str, TracerProvider] = {}
_NAMESPACE = uuid.UUID("8b4f2f5e-5a0e-4a8c-9d1e-0f6f3c1b2a77")


def provider() -> TracerProvider | None:
    """The SDK provider exporting to the configured endpoint, made once per endpoint."""
    endpoint = settings.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
    if not endpoint:
        return None
    with _lock:
        made = _providers.get(endpoint)
        if made is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            made = TracerProvider(
                resource=Resource.create({"service.name": settings.OTEL_SERVICE_NAME})
            )
            made.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
            _providers[endpoint] = made
    return made


def _attribute(value: Any) -> Any:
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list) and all(isinstance(v, str | bool | int | float) for v in value):
        types = {type(v) for v in value}
        return value if len(types) <= 1 else [str(v) for v in value]
    return str(value)


def spans_export(*, turn_id: int, records: Sequence[SpanRecord]) -> None:
    """Send a turn's spans (parents before children) to the collector; never raises."""
    chosen = provider()
    if chosen is None or not records:
        return
    try:
        _export(chosen, turn_id, records)
    except Exception:
        logger.exception("exporting the spans of turn %s failed", turn_id)


def _export(chosen: TracerProvider, turn_id: int, records: Sequence[SpanRecord]) -> None:
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

    trace_id = uuid.uuid5(_NAMESPACE, f"turn:{turn_id}").int
    anchor = SpanContext(
        trace_id=trace_id,
        span_id=(trace_id & 0xFFFFFFFFFFFFFFFF) or 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    tracer = chosen.get_tracer("support-assistant")
    made: dict[Any, Any] = {}
    for record in records:
        parent = made.get(record.parent_id) or NonRecordingSpan(anchor)
        start_ns = int(record.started_at.timestamp() * 1_000_000_000)
        attributes = {f"chatbot.{k}": _attribute(v) for k, v in record.attributes.items()}
        attributes.update(
            {
                "chatbot.turn_id": turn_id,
                "chatbot.span_id": str(record.id),
                "chatbot.kind": record.kind,
                "gen_ai.usage.input_tokens": record.tokens_in,
                "gen_ai.usage.output_tokens": record.tokens_out,
                "chatbot.cost": float(record.cost),
            }
        )
        span = tracer.start_span(
            f"{record.kind} {record.name}",
            context=trace.set_span_in_context(parent),
            start_time=start_ns,
            attributes=attributes,
        )
        if record.error:
            span.set_status(Status(StatusCode.ERROR, record.error[:500]))
        span.end(end_time=start_ns + int(record.duration_ms * 1_000_000))
        made[record.id] = span
