"""What every tool is: a name, a description the model reads, a JSON schema for its arguments,
who may use it by default, and a `run` that returns a result the model and the person can read.

Tools run synchronously (they touch the ORM, a database or an HTTP peer) in a worker thread; the
turn loop bounds each call by the admin's timeout. A tool never trusts its arguments: the loop has
validated them against `schema` before `run` is called, and the tool still checks whatever gives
it power (the SQL tool parses its query, the HTTP tool checks its host).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from django.contrib.auth.models import User

from chatbot.models import AssistantSettings
from chatbot.telemetry.tracing import Tracer

# What a tool result may hand the model: enough to answer from, never a whole database.
RESULT_TEXT_LIMIT = 4000


class ToolFailed(Exception):
    """A tool could not do what was asked; `user_message` is shown to the person as it is."""

    def __init__(self, user_message: str, *, detail: str = "") -> None:
        super().__init__(detail or user_message)
        self.user_message = user_message
        self.detail = detail or user_message


@dataclass(frozen=True)
class ToolContext:
    """Who the tool runs for and how the admin configured it."""

    user: User
    options: dict[str, Any]
    timeout_s: float
    turn_id: int | None = None
    # The turn's tracer, so what a tool does inside (a retrieval) nests under its span.
    tracer: Tracer | None = None
    # Search the knowledge base as it was at these collection versions (a replay as of its
    # original turn); None: as it is now.
    kb_as_of: dict[int, int] | None = None
    # The retrieval settings to search with (an A/B test variant's); None: the saved ones.
    config: AssistantSettings | None = None


@dataclass
class ToolResult:
    """`summary` is one line for the chat and the trace; `content` is what the model reads (as
    data between delimiters, never as instructions); `data` is structured for the page (a table,
    a query, extracted fields)."""

    summary: str
    content: str
    data: dict[str, Any] = field(default_factory=dict)
    # Knowledge-base passages the result holds (kb_search): cited by number like any passage.
    hits: list[Any] = field(default_factory=list)
    # The tool ran and found nothing (a query without rows). Such a result goes to the model
    # beside other evidence, but an answer never rests on it alone (`loop._gathered`).
    empty: bool = False

    def model_text(self) -> str:
        text = self.content
        if len(text) > RESULT_TEXT_LIMIT:
            text = text[:RESULT_TEXT_LIMIT] + "\n[result cut to its first 4,000 characters]"
        return text


class Tool:
    """Subclasses set the class attributes and implement `run`."""

    name: ClassVar[str]
    label: ClassVar[str]
    description: ClassVar[str]
    schema: ClassVar[dict[str, Any]]
    # Roles allowed when bootstrap first makes the tool's settings row; admins change them after.
    default_roles: ClassVar[tuple[str, ...]] = ("agent", "reviewer", "admin")
    default_timeout_s: ClassVar[float] = 10.0
    default_options: ClassVar[dict[str, Any]] = {}
    # One worked example for models that choose by filling a schema (small local models learn
    # the shape from it): a question and the arguments this tool would be called with.
    example: ClassVar[tuple[str, dict[str, Any]] | None] = None

    def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        raise NotImplementedError

    def describe(self, options: dict[str, Any]) -> str:
        """The description the model reads; a tool may add what the admin configured."""
        return self.description

    def options_errors(self, options: dict[str, Any]) -> list[str]:
        """Problems with an admin's options, in words; [] when they are fine."""
        return []


def compact_json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
