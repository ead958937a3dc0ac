"""Spans recorded in memory while a turn runs and written in one batch after the answer streams.

Span ids are made here, so a child can name its parent before anything touches the database.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chatbot.models import Span


@dataclass
class SpanRecord:
    kind: str
    name: str
    parent_id: uuid.UUID | None
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    started_at: datetime = field(default_factory=timezone.now)
    started: float = field(default_factory=time.perf_counter)
    duration_ms: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: Decimal = Decimal(0)
    attributes: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    def finish(self) -> None:
        self.duration_ms = (time.perf_counter() - self.started) * 1000


class Tracer:
    def __init__(self) -> None:
        self.records: list[SpanRecord] = []
        self._stack: list[SpanRecord] = []

    @contextmanager
    def span(self, kind: str, name: str, **attributes: Any) -> Iterator[SpanRecord]:
        parent = self._stack[-1].id if self._stack else None
        record = SpanRecord(kind=kind, name=name, parent_id=parent, attributes=dict(attributes))
        self.records.append(record)
        self._stack.append(record)
        try:
            yield record
        except BaseException as exc:
            record.error = record.error or f"{type(exc).__name__}: {exc}"
            raise
        finally:
            record.finish()
            self._stack.pop()

    def to_models(self, turn_id: int) -> list[Span]:
        return [
            Span(
                id=r.id,
                turn_id=turn_id,
                parent_id=r.parent_id,
                kind=r.kind,
                name=r.name,
                started_at=r.started_at,
                duration_ms=r.duration_ms,
                tokens_in=r.tokens_in,
                tokens_out=r.tokens_out,
                cost=r.cost,
                attributes=r.attributes,
                error=r.error,
            )
            for r in self.records
        ]


def spans_save(*, turn_id: int, tracer: Tracer) -> None:
    # Parents come first in `records`, so one ordered bulk insert satisfies the foreign keys.
    Span.objects.bulk_create(tracer.to_models(turn_id))
    if settings.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT and tracer.records:
        from chatbot.telemetry.otel import spans_export

        records = list(tracer.records)
        # After the commit, so a rolled-back turn exports nothing; the SDK sends in the background.
        transaction.on_commit(lambda: spans_export(turn_id=turn_id, records=records), robust=True)
