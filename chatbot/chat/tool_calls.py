"""A tool call as the chat shows it: the same block live (from the loop's events) and after a
reload (from the turn's `tool` spans), so a streamed turn and a reloaded one look alike."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from chatbot.agent.loop import StepEvent
from chatbot.agent.tools import TOOLS
from chatbot.models import Span, Turn

ARGUMENTS_SHOWN = 300
STATUS_WORDS = {
    "running": "running…",
    "done": "done",
    "failed": "failed",
    "refused": "refused",
}


@dataclass(frozen=True)
class ToolCallView:
    id: str
    tool: str
    label: str
    arguments: dict[str, Any]
    status: str
    summary: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    number: int | None = None
    cited: bool = False
    duration_ms: float | None = None

    @classmethod
    def from_event(cls, event: StepEvent) -> ToolCallView:
        return cls(
            id=event.id,
            tool=event.tool,
            label=event.label,
            arguments=event.arguments,
            status=event.status,
            summary=event.summary,
            data=event.data,
        )

    @classmethod
    def from_span(cls, span: Span) -> ToolCallView:
        attributes = span.attributes or {}
        tool = TOOLS.get(span.name)
        return cls(
            id=str(span.id),
            tool=span.name,
            label=tool.label if tool else span.name,
            arguments=attributes.get("arguments") or {},
            status=attributes.get("status") or ("failed" if span.error else "done"),
            summary=attributes.get("summary") or span.error,
            data=attributes.get("data") or {},
            number=attributes.get("number"),
            cited=bool(attributes.get("cited")),
            duration_ms=span.duration_ms,
        )

    @property
    def arguments_text(self) -> str:
        text = json.dumps(self.arguments, ensure_ascii=False)
        return text if len(text) <= ARGUMENTS_SHOWN else text[: ARGUMENTS_SHOWN - 1] + "…"

    @property
    def status_words(self) -> str:
        return STATUS_WORDS.get(self.status, self.status)

    @property
    def failed(self) -> bool:
        return self.status in {"failed", "refused"}


def tool_calls_of(turn: Turn) -> list[ToolCallView]:
    """The turn's tool calls in order; reads the prefetched `tool_spans` when the selector
    loaded them (`chatbot.chat.selectors`), else one query."""
    spans = getattr(turn, "tool_spans", None)
    if spans is None:
        spans = list(turn.spans.filter(kind=Span.Kind.TOOL).order_by("started_at"))
    return [ToolCallView.from_span(span) for span in spans]
