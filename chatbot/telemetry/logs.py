"""Structured logs that carry the turn id.

`turn_logging` binds the turn id (structlog's context variables) for everything a turn does,
including the threads it hops to through sync_to_async; `TurnContextFilter` copies it onto every
standard-library log record. `LOG_FORMAT=json` writes one JSON object a line through structlog's
`ProcessorFormatter`; the plain format appends `turn=<id>` when there is one.

Loaded by the LOGGING setting before the apps are ready: no models here.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine, MutableMapping
from typing import Any, ParamSpec, TypeVar

import structlog

P = ParamSpec("P")
R = TypeVar("R")


def turn_logging(
    func: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Bind the `turn_id` keyword argument of an async function to its logs."""

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        tokens = structlog.contextvars.bind_contextvars(turn_id=kwargs.get("turn_id"))
        try:
            return await func(*args, **kwargs)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)

    return wrapper


class TurnContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "turn_id"):
            record.turn_id = structlog.contextvars.get_contextvars().get("turn_id")
        return True


class PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        turn_id = getattr(record, "turn_id", None)
        return f"{line} turn={turn_id}" if turn_id is not None else line


def _turn_from_record(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    record = event.get("_record")
    turn_id = getattr(record, "turn_id", None)
    if turn_id is not None:
        event.setdefault("turn_id", turn_id)
    return event


def json_formatter() -> logging.Formatter:
    """One JSON object a line: time, level, logger, event, turn_id, and the exception if any."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _turn_from_record,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
