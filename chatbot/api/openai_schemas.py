"""The subset of OpenAI's chat-completions format we accept and answer with.

Unknown extra fields in a request are ignored, as OpenAI-compatible servers commonly do, so
clients that send vendor options keep working.
"""

from __future__ import annotations

import json
import time
from typing import Any

from django.conf import settings
from ninja import Field
from pydantic import ConfigDict
from pydantic.json_schema import JsonDict, JsonValue

from chatbot.agent.passthrough import PassOutcome
from chatbot.agent.turn import TurnOutcome
from chatbot.api.errors import NOT_BLANK_PATTERN
from chatbot.api.schemas import BodyIn, PositiveInt
from chatbot.chat.services import InvalidInput
from chatbot.llm.tools import ToolCall, WireMessage
from chatbot.llm.types import Message, Prompt, Role, Usage

# "developer" is what newer OpenAI clients call the system message.
ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}


class ContentPart(BodyIn):
    # Only text is passed on; prompt_from refuses other parts in words (hence the schema, not a
    # Literal, says so).
    model_config = ConfigDict(json_schema_extra={"required": ["type", "text"]})

    type: str = Field(json_schema_extra={"enum": ["text"]})
    text: str | None = Field(None, json_schema_extra={"type": "string"})


class FunctionCallIn(BodyIn):
    name: str
    arguments: str = Field("{}", description="The arguments as a JSON text, as OpenAI sends them.")


class ToolCallIn(BodyIn):
    id: str = Field(..., max_length=200)
    type: str = "function"
    function: FunctionCallIn


# A user's message is the question: text, not blank, within the chat's limit (prompt_from and
# message_validate check the last one; the schema says it of each).
_QUESTION: JsonDict = {
    "properties": {
        "role": {"const": "user"},
        "content": {
            "type": "string",
            "pattern": NOT_BLANK_PATTERN,
            "maxLength": settings.CHAT_MAX_MESSAGE_CHARS,
        },
    },
    "required": ["role", "content"],
}


OTHER_ROLES: list[JsonValue] = [role for role in [*ROLES, "tool"] if role != "user"]
_USER_FIRST: JsonDict = {"properties": {"role": {"const": "user"}}, "required": ["role"]}
_SYSTEM_FIRST: JsonDict = {
    "properties": {"role": {"enum": ["system", "developer"]}},
    "required": ["role"],
}


class ChatMessageIn(BodyIn):
    # Any role but user, or a user's question: every user message is one.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"properties": {"role": {"enum": OTHER_ROLES}}, "required": ["role"]},
                _QUESTION,
            ]
        }
    )

    role: str = Field(json_schema_extra={"enum": [*ROLES, "tool"]})
    content: str | list[ContentPart] | None = None
    # An assistant's earlier calls of the caller's tools, and a tool message's answer to one.
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = Field(None, max_length=200)


class FunctionIn(BodyIn):
    name: str = Field(..., pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = Field("", max_length=4000)
    parameters: dict[str, Any] = Field(default_factory=dict)


class ToolIn(BodyIn):
    type: str = Field("function", pattern="^function$")
    function: FunctionIn


class StreamOptions(BodyIn):
    include_usage: bool = False


# What prompt_from and wire_messages_from check across fields, stated for clients: `tool`
# messages (each with its tool_call_id) and `tool_choice` only come with `tools`.
_TOOLS_OR_NOT: JsonDict = {
    "if": {"properties": {"tools": {"type": "array", "minItems": 1}}, "required": ["tools"]},
    "then": {
        "properties": {
            "messages": {
                "items": {
                    "if": {"properties": {"role": {"const": "tool"}}, "required": ["role"]},
                    "then": {
                        "properties": {"tool_call_id": {"type": "string", "minLength": 1}},
                        "required": ["tool_call_id"],
                    },
                }
            }
        }
    },
    "else": {
        "properties": {
            "tool_choice": {"type": "null"},
            "messages": {"items": {"properties": {"role": {"not": {"const": "tool"}}}}},
        }
    },
}


class ChatCompletionIn(BodyIn):
    model_config = ConfigDict(json_schema_extra=_TOOLS_OR_NOT)

    model: str = Field(
        "", description='A name from /v1/models; "default" or empty for the default.'
    )
    messages: list[ChatMessageIn] = Field(
        description="At least one with the role user, whose text (the last one's) is the "
        "question: not blank, at most CHAT_MAX_MESSAGE_CHARS characters; at most "
        "API_MAX_TOTAL_CHARS characters in all. `tool` messages only with `tools`. The schema "
        "asks for the question first, or after one system message.",
        json_schema_extra={
            "minItems": 1,
            "maxItems": settings.API_MAX_MESSAGES,
            # There must be a question. JSON Schema says "contains", which schemathesis cannot
            # generate with these items; this says less (the server takes a user's message
            # anywhere): the first message is a user's, or a system message is, and the second.
            "anyOf": [
                {"prefixItems": [_USER_FIRST]},
                {"prefixItems": [_SYSTEM_FIRST, _USER_FIRST], "minItems": 2},
            ],
        },
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    # Accepted for compatibility; the catalogue entry's own limits apply to the answer.
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    tools: list[ToolIn] | None = Field(
        None,
        max_length=64,
        description="Your own tools: passed through to a model whose tool calling is native; "
        "the reply carries its tool calls for you to run. Without tools, our own are used.",
    )
    tool_choice: str | dict[str, Any] | None = Field(
        None, description='"auto", "none", "required", or {"type": "function", ...}.'
    )
    parallel_tool_calls: bool | None = None


def _text(index: int, message: ChatMessageIn) -> str:
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for part in content:
        if part.type != "text" or part.text is None:
            raise InvalidInput(
                f"messages[{index}]: only text content is supported, not '{part.type}'."
            )
        texts.append(part.text)
    return "".join(texts)


def prompt_from(messages: list[ChatMessageIn]) -> Prompt:
    """Our Prompt from OpenAI-style messages, refusing what we cannot pass on faithfully."""
    if not messages:
        raise InvalidInput("'messages' must contain at least one message.")
    if len(messages) > settings.API_MAX_MESSAGES:
        raise InvalidInput(
            f"'messages' has {len(messages)} messages; the limit is {settings.API_MAX_MESSAGES}. "
            "Send the recent part of the conversation."
        )
    converted: list[Message] = []
    total = 0
    for index, message in enumerate(messages):
        role = ROLES.get(message.role)
        if role is None:
            raise InvalidInput(
                f"messages[{index}]: the role '{message.role}' is not supported; "
                "use system, user or assistant."
            )
        converted.append(Message(role, _text(index, message)))
        total += len(converted[-1].content)
        if total > settings.API_MAX_TOTAL_CHARS:
            raise InvalidInput(
                f"'messages' is too long: more than {settings.API_MAX_TOTAL_CHARS:,} characters "
                "in all. Send the recent part of the conversation, or shorten it."
            )
    if not any(m.role == "user" for m in converted):
        raise InvalidInput("'messages' must include at least one message with the role 'user'.")
    return Prompt(tuple(converted))


def completion_id(turn_id: int) -> str:
    return f"chatcmpl-{turn_id}"


def usage_body(usage: Usage) -> dict[str, int]:
    prompt, completion = usage.input_tokens, usage.output_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _completion(
    turn_id: int, model: str, message: dict[str, Any], finish: str, usage: Usage
) -> dict[str, Any]:
    return {
        "id": completion_id(turn_id),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage_body(usage),
    }


def completion_body(outcome: TurnOutcome) -> dict[str, Any]:
    message = {"role": "assistant", "content": outcome.answer}
    return _completion(outcome.turn_id, outcome.endpoint_name, message, "stop", outcome.usage)


def chunk_body(
    turn_id: int,
    model: str,
    created: int,
    *,
    delta: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": completion_id(turn_id),
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def error_body(
    message: str, type_: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


TOOL_ROLES = {**ROLES, "tool": "tool"}


def _tool_calls(index: int, message: ChatMessageIn) -> tuple[ToolCall, ...]:
    calls = []
    for call in message.tool_calls or []:
        try:
            arguments = json.loads(call.function.arguments or "{}")
        except json.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):
            raise InvalidInput(
                f"messages[{index}]: the arguments of tool call '{call.id}' must be a JSON object."
            )
        calls.append(ToolCall(id=call.id, name=call.function.name, arguments=arguments))
    return tuple(calls)


def wire_messages_from(messages: list[ChatMessageIn]) -> tuple[list[WireMessage], str]:
    """A caller's tool-using conversation as it goes to the model, and the question to record
    (its last user message). Checked as `prompt_from` checks a plain one."""
    prompt_from([m for m in messages if m.role != "tool"] or messages)
    converted: list[WireMessage] = []
    for index, message in enumerate(messages):
        role = TOOL_ROLES.get(message.role)
        if role is None:
            raise InvalidInput(
                f"messages[{index}]: the role '{message.role}' is not supported; "
                "use system, user, assistant or tool."
            )
        if role == "tool" and not message.tool_call_id:
            raise InvalidInput(f"messages[{index}]: a tool message needs its 'tool_call_id'.")
        converted.append(
            WireMessage(
                role=role,
                content=_text(index, message),
                tool_calls=_tool_calls(index, message) if role == "assistant" else (),
                tool_call_id=message.tool_call_id or "",
            )
        )
    question = next(m.content for m in reversed(converted) if m.role == "user")
    return converted, question


def tool_calls_body(calls: list[ToolCall]) -> list[dict[str, Any]]:
    return [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
        }
        for call in calls
    ]


def passthrough_body(outcome: PassOutcome) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": outcome.text or None}
    if outcome.calls:
        message["tool_calls"] = tool_calls_body(outcome.calls)
    finish = "tool_calls" if outcome.calls else "stop"
    return _completion(outcome.turn_id, outcome.endpoint_name, message, finish, outcome.usage)


# --- What /v1 answers, for /v1/openapi.json (the bodies above are built as dicts) --------------

_ERROR_REF = {"$ref": "#/components/schemas/OpenAIError"}
_USAGE = {
    "type": "object",
    "properties": {
        "prompt_tokens": {"type": "integer"},
        "completion_tokens": {"type": "integer"},
        "total_tokens": {"type": "integer"},
    },
    "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
}
_TOOL_CALL_OUT = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "type": {"const": "function"},
        "function": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "arguments": {"type": "string"}},
            "required": ["name", "arguments"],
        },
    },
    "required": ["id", "type", "function"],
}
COMPLETION_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "chat.completion"},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "message": {
                        "type": "object",
                        "properties": {
                            "role": {"const": "assistant"},
                            "content": {"type": ["string", "null"]},
                            "tool_calls": {"type": "array", "items": _TOOL_CALL_OUT},
                        },
                        "required": ["role", "content"],
                    },
                    "logprobs": {"type": "null"},
                    "finish_reason": {"enum": ["stop", "tool_calls"]},
                },
                "required": ["index", "message", "finish_reason"],
            },
        },
        "usage": _USAGE,
    },
    "required": ["id", "object", "created", "model", "choices", "usage"],
}
MODEL_LIST_SCHEMA = {
    "type": "object",
    "properties": {
        "object": {"const": "list"},
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "object": {"const": "model"},
                    "created": {"type": "integer"},
                    "owned_by": {"type": "string"},
                },
                "required": ["id", "object", "created", "owned_by"],
            },
        },
    },
    "required": ["object", "data"],
}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


MODELS_RESPONSES = {
    "200": {
        "description": "The enabled catalogue entries.",
        "content": {"application/json": {"schema": MODEL_LIST_SCHEMA}},
    }
}
COMPLETION_RESPONSES = {
    "200": {
        "description": "The answer; with `stream: true`, server-sent `data:` lines of "
        "`chat.completion.chunk` objects ending with `data: [DONE]` (a model failure mid-stream "
        "is a last `data:` line with OpenAI's error body).",
        "content": {
            "application/json": {"schema": COMPLETION_SCHEMA},
            # Each event, as an SSE parser hands it over: `data` is a chunk's JSON or [DONE].
            "text/event-stream": {
                "schema": {
                    "type": "object",
                    "properties": {"data": {"type": "string"}},
                    "required": ["data"],
                }
            },
        },
    },
    "404": _error_response("The model named in `model` does not exist or is disabled."),
    "502": _error_response("The model failed; the turn is kept as failed (`x-should-retry`)."),
    "503": _error_response("No `model` was named and no model is available."),
}
