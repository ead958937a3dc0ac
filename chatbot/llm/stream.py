"""Streaming a prompt through any catalogue endpoint, with token counts and plain-words errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
)

from chatbot.llm.pricing import estimate_tokens
from chatbot.llm.prompts import chat_messages, render_completion
from chatbot.llm.registry import model_for
from chatbot.llm.types import EndpointConfig, ModelError, Overrides, Prompt, Usage
from chatbot.llm.veil import prompt_veil, veil_for


def to_langchain(prompt: Prompt) -> list[BaseMessage]:
    kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
    return [kinds[m.role](content=m.content) for m in chat_messages(prompt)]


def _error_for(endpoint: EndpointConfig, exc: Exception) -> ModelError:
    """Translate SDK and network errors into one message a support agent understands."""
    if isinstance(exc, ModelError):
        return exc
    name = type(exc).__name__
    detail = f"{name}: {exc}"
    text = str(exc).lower()
    if "connect" in name.lower() or "connection" in text or "refused" in text:
        # Under `make run` a closed port is usually the local model server being restarted.
        msg = (
            f"The model '{endpoint.name}' is unavailable right now (it could not be reached; it "
            "may be restarting). Please try again in a moment."
        )
    elif "timeout" in name.lower() or "timed out" in text:
        msg = f"The model '{endpoint.name}' took too long to answer. Please try again."
    elif "ratelimit" in name.lower() or "429" in text:
        msg = f"The model '{endpoint.name}' is busy (rate limited). Please try again shortly."
    elif "auth" in name.lower() or "401" in text or "403" in text:
        msg = (
            f"The model '{endpoint.name}' refused our credentials. An admin needs to check its key."
        )
    elif "context" in text and ("length" in text or "window" in text):
        msg = "The conversation is too long for this model. Please start a new conversation."
    else:
        msg = f"The model '{endpoint.name}' failed to answer. Please try again or escalate."
    return ModelError(msg, detail=detail)


def _chunk_text(chunk: object) -> str:
    if isinstance(chunk, str):
        return chunk
    content = getattr(chunk, "content", "")
    if isinstance(content, str):
        return content
    # Some providers stream a list of content blocks.
    return "".join(
        block.get("text", "") if isinstance(block, dict) else str(block) for block in content
    )


def _call_kwargs(endpoint: EndpointConfig, overrides: Overrides | None) -> dict[str, Any]:
    """A caller may ask for fewer output tokens than the catalogue allows, never more."""
    kwargs: dict[str, Any] = {}
    if overrides is None:
        return kwargs
    if overrides.max_tokens is not None:
        kwargs["max_tokens"] = min(overrides.max_tokens, endpoint.max_output_tokens)
    if overrides.temperature is not None:
        kwargs["temperature"] = overrides.temperature
    return kwargs


async def astream_text(
    endpoint: EndpointConfig,
    prompt: Prompt,
    usage: Usage,
    *,
    overrides: Overrides | None = None,
) -> AsyncIterator[str]:
    """Yield the answer's text pieces as they arrive; fill `usage` when the stream ends.

    Counts come from the server when it reports them; otherwise they are estimated and marked so.
    An endpoint that may not see personal data is sent placeholders, and its answer comes back
    with the original values (`chatbot.llm.veil`).
    """
    kwargs = _call_kwargs(endpoint, overrides)
    try:
        veil = veil_for(endpoint)
        prompt = prompt_veil(veil, prompt)
        restorer = veil.restorer() if veil is not None else None
        model = model_for(endpoint)
        reported = False
        pieces = 0
        produced: list[str] = []
        stream: AsyncIterator[object]
        if isinstance(model, BaseChatModel):
            stream = model.astream(to_langchain(prompt), **kwargs)
            prompt_text = "\n".join(m.content for m in prompt.messages)
        else:
            prompt_text = render_completion(endpoint.prompt_template, prompt)
            stream = model.astream(prompt_text, **kwargs)
        async for chunk in stream:
            meta = (
                getattr(chunk, "usage_metadata", None)
                if isinstance(chunk, AIMessageChunk)
                else None
            )
            if meta:
                usage.input_tokens += int(meta.get("input_tokens", 0))
                usage.output_tokens += int(meta.get("output_tokens", 0))
                reported = True
            text = _chunk_text(chunk)
            if text:
                pieces += 1
                produced.append(text)
                if restorer is not None:
                    text = restorer.feed(text)
                if text:
                    yield text
        if restorer is not None and (rest := restorer.flush()):
            yield rest
        if not reported:
            usage.input_tokens = estimate_tokens(prompt_text)
            # OpenAI-compatible servers stream about one token a chunk; a fake streams characters.
            answer = "".join(produced)
            usage.output_tokens = estimate_tokens(answer) if endpoint.provider == "fake" else pieces
            usage.estimated = True
    except ModelError:
        raise
    except Exception as exc:
        raise _error_for(endpoint, exc) from exc
