"""Request and response shapes of /api/, which are also its OpenAPI documentation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from django.conf import settings
from ninja import Field, Path, Schema
from pydantic import (
    BeforeValidator,
    ConfigDict,
    ModelWrapValidatorHandler,
    ValidationInfo,
    model_validator,
)
from pydantic import (
    Field as PydanticField,
)
from pydantic.json_schema import JsonDict
from pydantic_core import PydanticCustomError

from chatbot.agent.turn import TurnOutcome
from chatbot.api.contract import MAX_ID
from chatbot.api.errors import NOT_BLANK_PATTERN
from chatbot.chat.tool_calls import tool_calls_of
from chatbot.models import Conversation, Escalation, Feedback, Turn

# An id in a path: a value past PostgreSQL's bigint is refused (422) before it reaches a query.
PathId = Annotated[int, Path(..., ge=1, le=MAX_ID)]
# A text field the services check themselves, so their sentence is what a caller reads: the schema
# states the same rule (a character that is not blank, and no NUL: see errors.ObjectParser).
NOT_BLANK: JsonDict = {"pattern": NOT_BLANK_PATTERN}


class BodyIn(Schema):
    """A request body: JSON types as the schema states them, so `"1"` for 1, `0` for false or a
    list for an object is refused in words (422/400) rather than guessed at."""

    model_config = ConfigDict(strict=True)

    @model_validator(mode="wrap")
    @classmethod
    def _run_root_validator(
        cls, values: Any, handler: ModelWrapValidatorHandler[Any], info: ValidationInfo
    ) -> Any:
        # Replaces ninja's, which reads any value's attributes (made for ORM objects in
        # responses): a list or a number would pass as an object with every field defaulted.
        if isinstance(values, dict | cls):
            return handler(values)
        raise PydanticCustomError("dict_type", "Input should be a JSON object")


def _whole(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# A JSON integer: JSON Schema counts 3.0 as one; strict pydantic alone would not.
JsonInt = Annotated[int, BeforeValidator(_whole)]
# The bounds come before the validator, or pydantic cannot write them into the JSON schema.
# An id in a body, within PostgreSQL's bigint:
RowId = Annotated[int, PydanticField(ge=1, le=MAX_ID), BeforeValidator(_whole)]
PositiveInt = Annotated[int, PydanticField(ge=1), BeforeValidator(_whole)]


class ErrorOut(Schema):
    detail: str = Field(description="What went wrong, in words a person can act on.")


class ValidationErrorOut(ErrorOut):
    errors: list[dict[str, str]] = Field(description="One entry per bad field: field, message.")


class ConversationIn(BodyIn):
    title: str = Field("", max_length=200, description="Optional; the first message names it.")


class ConversationOut(Schema):
    id: int
    title: str
    channel: str
    created_at: datetime
    updated_at: datetime


class FeedbackOut(Schema):
    rating: int = Field(description="1 thumbs up, -1 thumbs down.")
    comment: str


class CitationOut(Schema):
    number: int = Field(description="The [n] the answer uses for this passage.")
    cited: bool = Field(description="Whether the answer cites it.")
    chunk_id: int
    external_id: str = Field(description="The document's id in its source.")
    title: str
    url: str


class ToolCallOut(Schema):
    tool: str = Field(description="The tool's name, e.g. sql, classify, kb_search.")
    arguments: dict[str, Any] = Field(description="What the agent called it with.")
    status: str = Field(description="done, failed or refused.")
    summary: str = Field(description="A short result, or why it failed, in words.")
    number: int | None = Field(None, description="The answer cites its result as [number].")
    data: dict[str, Any] = Field(
        default_factory=dict, description="The result as data: a query's columns and rows, …"
    )


class EscalationIn(BodyIn):
    reason: str | None = Field(
        None,
        description="What a colleague should know; optional, up to 2,000 characters.",
        json_schema_extra={"maxLength": 2000},
    )


class EscalationOut(Schema):
    turn_id: int
    status: str = Field(description="open, claimed, answered or resolved.")
    reason: str
    created_at: datetime
    answer: str = Field("", description="The human's reply to the asker; empty until there is one.")
    answered_by: str = Field("", description="Who replied (their name).")
    answered_at: datetime | None = None


def escalation_out(escalation: Escalation) -> EscalationOut:
    by = escalation.answered_by
    return EscalationOut(
        turn_id=escalation.turn_id,
        status=escalation.status,
        reason=escalation.reason,
        created_at=escalation.created_at,
        answer=escalation.answer,
        answered_by=(by.get_full_name() or by.username) if by else "",
        answered_at=escalation.answered_at,
    )


class TurnOut(Schema):
    id: int
    user_text: str
    answer: str
    status: str = Field(description="pending, streaming, done, failed or cancelled.")
    model: str | None = Field(description="Name of the catalogue endpoint that answered.")
    tokens_in: int
    tokens_out: int
    tokens_estimated: bool
    cost: float
    ttft_ms: float | None
    total_ms: float | None
    error: str
    created_at: datetime
    feedback: FeedbackOut | None = Field(description="The caller's own rating, if any.")
    no_answer: bool = Field(description="True when the knowledge base had nothing relevant.")
    escalated: bool = Field(description="True when someone asked for a human to take over.")
    escalation: EscalationOut | None = Field(
        None, description="That request: its state and the human's reply, if any."
    )
    citations: list[CitationOut] = Field(description="The passages the answer was given.")
    tool_calls: list[ToolCallOut] = Field(
        default_factory=list, description="The tools the agent called for this answer, in order."
    )


class ConversationDetailOut(ConversationOut):
    turns: list[TurnOut]


class MessageIn(BodyIn):
    message: str = Field(
        description="The question. Must not be blank; at most CHAT_MAX_MESSAGE_CHARS characters.",
        json_schema_extra={**NOT_BLANK, "maxLength": settings.CHAT_MAX_MESSAGE_CHARS},
    )
    stream: bool = Field(False, description="true: answer as server-sent events.")
    model: str | None = Field(
        None, description='A catalogue endpoint name; leave out (or "default") for the default.'
    )


class UsageOut(Schema):
    input_tokens: int
    output_tokens: int


class MessageOut(Schema):
    turn_id: int
    status: str = Field(description="done, or failed with `error` saying why.")
    answer: str
    error: str
    model: str
    usage: UsageOut


class FeedbackIn(BodyIn):
    rating: JsonInt = Field(
        description="1 (thumbs up) or -1 (thumbs down).", json_schema_extra={"enum": [1, -1]}
    )
    comment: str | None = Field(
        None, description="Optional, up to 2,000 characters.", json_schema_extra={"maxLength": 2000}
    )


class FeedbackSavedOut(FeedbackOut):
    turn_id: int


DEFAULT_NAMES = {"", "default"}


def requested_model(name: str | None) -> str | None:
    """The endpoint name to ask the router for; None asks for its default."""
    cleaned = (name or "").strip()
    return None if cleaned.lower() in DEFAULT_NAMES else cleaned


def conversation_out(conversation: Conversation) -> ConversationOut:
    return ConversationOut(
        id=conversation.pk,
        title=conversation.title,
        channel=conversation.channel,
        created_at=conversation.created_at,
        updated_at=conversation.updated_at,
    )


def turn_out(turn: Turn) -> TurnOut:
    mine: list[Feedback] = getattr(turn, "my_feedback", [])
    return TurnOut(
        id=turn.pk,
        user_text=turn.user_text,
        answer=turn.answer,
        status=turn.status,
        model=turn.endpoint.name if turn.endpoint else None,
        tokens_in=turn.tokens_in,
        tokens_out=turn.tokens_out,
        tokens_estimated=turn.tokens_estimated,
        cost=float(turn.cost),
        ttft_ms=turn.ttft_ms,
        total_ms=turn.total_ms,
        error=turn.error,
        created_at=turn.created_at,
        feedback=FeedbackOut(rating=mine[0].rating, comment=mine[0].comment) if mine else None,
        no_answer=turn.no_answer,
        escalated=turn.escalation_or_none is not None,
        escalation=escalation_out(e) if (e := turn.escalation_or_none) else None,
        citations=[
            CitationOut(
                number=c.number,
                cited=c.cited,
                chunk_id=c.chunk_id,
                external_id=c.chunk.document.external_id,
                title=c.chunk.document.title,
                url=c.chunk.document.url,
            )
            for c in turn.citations.all()
        ],
        tool_calls=[
            ToolCallOut(
                tool=call.tool,
                arguments=call.arguments,
                status=call.status,
                summary=call.summary,
                number=call.number,
                data=call.data,
            )
            for call in tool_calls_of(turn)
        ],
    )


def message_out(outcome: TurnOutcome) -> MessageOut:
    return MessageOut(
        turn_id=outcome.turn_id,
        status=outcome.status,
        answer=outcome.answer,
        error=outcome.error,
        model=outcome.endpoint_name,
        usage=UsageOut(
            input_tokens=outcome.usage.input_tokens, output_tokens=outcome.usage.output_tokens
        ),
    )
