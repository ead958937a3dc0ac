"""The subset of OpenAI's chat-completions format we accept and answer with.

Unknown extra fields in a request are ignored, as OpenAI-compatible servers commonly do, so
clients that send vendor options keep working.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from ninja import Field, Schema

from chatbot.agent.turn import TurnOutcome
from chatbot.chat.services import InvalidInput
from chatbot.llm.types import Message, Prompt, Role

# "developer" is what newer OpenAI clients call the system message.
ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}


class ContentPart(Schema):
    type: str
    text: str | None = None


class ChatMessageIn(Schema):
    role: str
    content: str | list[ContentPart] | None = None


class StreamOptions(Schema):
    include_usage: bool = False


class ChatCompletionIn(Schema):
    model: str = Field(
        "", description='A name from /v1/models; "default" or empty for the default.'
    )
    messages: list[ChatMessageIn]
    stream: bool = False
    stream_options: StreamOptions | None = None
    # Accepted for compatibility; the catalogue entry's own limits apply to the answer.
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)


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


def usage_body(outcome: TurnOutcome) -> dict[str, int]:
    prompt, completion = outcome.usage.input_tokens, outcome.usage.output_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def completion_body(outcome: TurnOutcome) -> dict[str, Any]:
    return {
        "id": completion_id(outcome.turn_id),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": outcome.endpoint_name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": outcome.answer},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage_body(outcome),
    }


def chunk_body(
    turn_id: int,
    model: str,
    created: int,
    *,
    delta: dict[str, str] | None = None,
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
