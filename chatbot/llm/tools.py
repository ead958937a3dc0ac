"""Asking a model to choose the agent's next step, two ways behind one call each:

- native tool calling (`bind_tools`): the endpoint returns tool calls itself (hosted APIs, vLLM,
  Ollama, llama.cpp with a tool-capable model);
- structured choice: the model fills a JSON schema under constrained decoding. For a
  completion-style llama.cpp server the schema becomes a GBNF grammar (`grammar`, which
  llama-cpp-python's server accepts on /v1/completions); for chat-style servers it is sent as
  `response_format` with the JSON schema (OpenAI, vLLM, llama.cpp's chat endpoint). A caller
  that validates the output itself may ask first without the constraint
  (`complete_json(constrained=False)`): a grammar slows every token.

Only this package speaks to vendors; the agent gets our own small types back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from chatbot.llm.registry import model_for
from chatbot.llm.stream import _error_for, to_langchain
from chatbot.llm.types import EndpointConfig, ModelError, Prompt, Usage
from chatbot.llm.veil import Veil, prompt_veil, value_hide, value_reveal, veil_for

# A step choice is a short JSON object; a cap keeps a confused model from rambling for seconds.
CHOICE_MAX_TOKENS = 160


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]

    def openai(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Exchange:
    """A step already taken, fed back to the model: the call and what came of it (as data)."""

    call: ToolCall
    result: str


@dataclass
class NativeChoice:
    calls: list[ToolCall] = field(default_factory=list)
    text: str = ""


def _usage_add(usage: Usage, message: object) -> None:
    meta = getattr(message, "usage_metadata", None)
    if meta:
        usage.input_tokens += int(meta.get("input_tokens", 0))
        usage.output_tokens += int(meta.get("output_tokens", 0))


def _choice_of(reply: BaseMessage, veil: Veil | None = None) -> NativeChoice:
    """A model's reply as our own type: its tool calls, or its text (original values restored)."""
    calls = [
        ToolCall(
            id=str(c.get("id") or f"call_{n}"),
            name=c["name"],
            arguments=value_reveal(veil, dict(c["args"])),
        )
        for n, c in enumerate(getattr(reply, "tool_calls", None) or [])
    ]
    content = reply.content if isinstance(reply.content, str) else ""
    return NativeChoice(calls=calls, text=value_reveal(veil, content))


def _native_messages(
    prompt: Prompt, exchanges: list[Exchange], veil: Veil | None = None
) -> list[BaseMessage]:
    messages = to_langchain(prompt_veil(veil, prompt))
    for exchange in exchanges:
        call = exchange.call
        messages.append(
            AIMessage(
                content="",
                tool_calls=[
                    {"id": call.id, "name": call.name, "args": value_hide(veil, call.arguments)}
                ],
            )
        )
        messages.append(
            ToolMessage(content=value_hide(veil, exchange.result), tool_call_id=call.id)
        )
    return messages


async def choose_native(
    endpoint: EndpointConfig,
    prompt: Prompt,
    tools: list[ToolSpec],
    exchanges: list[Exchange],
    usage: Usage,
) -> NativeChoice:
    """One call with the tools bound; the model answers with tool calls or with text."""
    try:
        veil = veil_for(endpoint)
        model = model_for(endpoint)
        if not isinstance(model, BaseChatModel):
            raise ModelError(
                f"The model '{endpoint.name}' cannot call tools natively: it is completion style.",
                detail="native tool calling needs a chat-style endpoint",
            )
        bound = model.bind_tools([tool.openai() for tool in tools])
        reply = await bound.ainvoke(_native_messages(prompt, exchanges, veil))
    except ModelError:
        raise
    except Exception as exc:
        raise _error_for(endpoint, exc) from exc
    _usage_add(usage, reply)
    return _choice_of(reply, veil)


def _without_lengths(value: Any) -> Any:
    """The schema minus string length bounds: a grammar spells a bound of n as n nested optional
    characters (slow to compile, and the server compiles it on every request). The output is
    validated against the full schema afterwards, so the bounds still hold."""
    if isinstance(value, dict):
        return {
            k: _without_lengths(v) for k, v in value.items() if k not in {"maxLength", "minLength"}
        }
    if isinstance(value, list):
        return [_without_lengths(v) for v in value]
    return value


@lru_cache(maxsize=64)
def _grammar(schema_json: str) -> str:
    # llama-cpp-python's own converter: the grammar its server compiles, so no drift between us.
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    grammar = str(json_schema_to_gbnf(json.dumps(_without_lengths(json.loads(schema_json)))))
    # After "Step:" a completion model's next token is " {"; a grammar that must start at "{"
    # pushes it off its own distribution (seen: it then picks the shortest alternative).
    return grammar.replace("root ::=", "json-root ::=", 1) + '\nroot ::= " "? json-root\n'


def structured_way(endpoint: EndpointConfig) -> str:
    """ "grammar" (llama.cpp's completion endpoint) or "response_format" (chat endpoints)."""
    return str(
        endpoint.options.get("structured_output")
        or ("grammar" if endpoint.style == "completion" else "response_format")
    )


def structured_kwargs(endpoint: EndpointConfig, schema: dict[str, Any]) -> dict[str, Any]:
    """How this endpoint is told to keep to `schema` (see the module docstring)."""
    # Key order matters: the grammar writes properties in the order the schema lists them.
    schema_json = json.dumps(schema)
    if structured_way(endpoint) == "grammar":
        return {"extra_body": {"grammar": _grammar(schema_json)}}
    return {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "step", "schema": schema, "strict": False},
        }
    }


async def complete_json(
    endpoint: EndpointConfig,
    *,
    text: str,
    messages: list[BaseMessage] | None,
    schema: dict[str, Any],
    usage: Usage,
    max_tokens: int = CHOICE_MAX_TOKENS,
    constrained: bool = True,
) -> str:
    """The model's raw output for a schema-constrained request: `text` for a completion-style
    endpoint, `messages` for a chat one. Parsing and validating are the caller's (it retries).

    `constrained=False` sends the same request without the schema, ending at the first line
    break (a step is one line of JSON, as the examples show it): for a caller that validates the
    output and asks again constrained when it does not fit (`choose_structured`)."""
    kwargs: dict[str, Any] = {
        **(structured_kwargs(endpoint, schema) if constrained else {}),
        "max_tokens": max_tokens,
        "temperature": 0.0,
    }
    stop = [] if constrained else ["\n"]
    try:
        veil = veil_for(endpoint)
        model = model_for(endpoint)
        if isinstance(model, BaseChatModel):
            sent = [
                m.model_copy(update={"content": value_hide(veil, m.content)})
                if isinstance(m.content, str)
                else m
                for m in messages or [HumanMessage(content=text)]
            ]
            if stop:
                kwargs["stop"] = stop
            reply = await model.ainvoke(sent, **kwargs)
            _usage_add(usage, reply)
            content = reply.content
            return value_reveal(veil, content) if isinstance(content, str) else ""
        # Constrained, no stop sequences: a JSON value may well contain a blank line or
        # "Question:" (JSON on one line escapes its line breaks, so a free one stops at one).
        output = await model.ainvoke(value_hide(veil, text), stop=stop, **kwargs)
        return str(value_reveal(veil, str(output)))
    except ModelError:
        raise
    except Exception as exc:
        raise _error_for(endpoint, exc) from exc


@dataclass(frozen=True)
class WireMessage:
    """A message of a caller's own tool-using conversation (the OpenAI-compatible API): the
    assistant's earlier tool calls and the caller's tool results travel as they came."""

    role: str  # system, user, assistant or tool
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""


def _wire_messages(messages: list[WireMessage], veil: Veil | None = None) -> list[BaseMessage]:
    from langchain_core.messages import SystemMessage

    converted: list[BaseMessage] = []
    for m in messages:
        content = value_hide(veil, m.content)
        if m.role == "system":
            converted.append(SystemMessage(content=content))
        elif m.role == "user":
            converted.append(HumanMessage(content=content))
        elif m.role == "tool":
            converted.append(ToolMessage(content=content, tool_call_id=m.tool_call_id))
        else:
            calls = [
                {"id": c.id, "name": c.name, "args": value_hide(veil, c.arguments)}
                for c in m.tool_calls
            ]
            converted.append(AIMessage(content=content, tool_calls=calls))
    return converted


async def call_with_tools(
    endpoint: EndpointConfig,
    messages: list[WireMessage],
    tools: list[dict[str, Any]],
    *,
    tool_choice: str | dict[str, Any] | None,
    usage: Usage,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> NativeChoice:
    """One call with the caller's own tools bound (OpenAI format, passed on as they are); the
    model replies with tool calls for the caller to run, or with text."""
    kwargs: dict[str, Any] = {}
    if max_tokens is not None:
        kwargs["max_tokens"] = min(max_tokens, endpoint.max_output_tokens)
    if temperature is not None:
        kwargs["temperature"] = temperature
    try:
        veil = veil_for(endpoint)
        model = model_for(endpoint)
        if not isinstance(model, BaseChatModel):
            raise ModelError(
                f"The model '{endpoint.name}' cannot call tools: it is completion style.",
                detail="tools need a chat-style endpoint",
            )
        # ChatOpenAI also takes {"type": "function", ...} here; the base class types only str.
        choice: dict[str, Any] = {} if tool_choice is None else {"tool_choice": tool_choice}
        bound = model.bind_tools(tools, **choice) if tools else model
        reply = await bound.ainvoke(_wire_messages(messages, veil), **kwargs)
    except ModelError:
        raise
    except Exception as exc:
        raise _error_for(endpoint, exc) from exc
    _usage_add(usage, reply)
    return _choice_of(reply, veil)
