"""Providers: one entry each. Adding a provider is one function and one line in PROVIDERS.

Everything a provider builds is a langchain-core model (`BaseChatModel` for chat style, `BaseLLM` for
completion style), so the streaming code below has a single path.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Callable
from functools import cached_property
from typing import Any

from django.conf import settings
from langchain_core.language_models import BaseChatModel, BaseLLM

from chatbot.llm.prompts import COMPLETION_STOP
from chatbot.llm.types import EndpointConfig, ModelError

LangchainModel = BaseChatModel | BaseLLM
ProviderBuilder = Callable[[EndpointConfig], LangchainModel]


def _api_key(endpoint: EndpointConfig, *, required: bool) -> str:
    if endpoint.api_key_name:
        key = settings.MODEL_API_KEYS.get(endpoint.api_key_name, "")
        if not key and required:
            raise ModelError(
                f"The model '{endpoint.name}' is not configured: its API key is missing.",
                detail=f"environment variable {endpoint.api_key_name} is not set",
            )
        return key
    # OpenAI-compatible local servers (llama.cpp, vLLM, Ollama) accept any key.
    return "not-needed"


# langchain-openai and langchain-anthropic otherwise share one process-wide httpx client per base
# URL (an lru_cache), whose pooled connections belong to the event loop that opened them: against a
# keep-alive server (llama.cpp, vLLM, any API) every other call made from a new loop (a Celery task
# through async_to_sync) failed with "Event loop is closed". Each model object gets a client of its
# own instead; `model_for` keeps one model object per loop, so one client per loop.


def _openai(endpoint: EndpointConfig) -> LangchainModel:
    import openai
    from langchain_openai import ChatOpenAI, OpenAI

    common: dict[str, Any] = {
        "model": endpoint.model_id,
        "api_key": _api_key(endpoint, required=False),
        "base_url": endpoint.base_url or None,
        "temperature": endpoint.temperature,
        "max_tokens": endpoint.max_output_tokens,
        "timeout": settings.MODEL_REQUEST_TIMEOUT_S,
        # Retries hide an outage behind a long wait; the turn records the failure instead.
        "max_retries": 0,
        "http_async_client": openai.DefaultAsyncHttpxClient(
            timeout=settings.MODEL_REQUEST_TIMEOUT_S
        ),
    }
    if endpoint.style == "completion":
        stop = endpoint.options.get("stop", list(COMPLETION_STOP))
        return OpenAI(**common, model_kwargs={"stop": stop}, streaming=True)
    return ChatOpenAI(**common, streaming=True, stream_usage=True)


@functools.cache
def _anthropic_class() -> type[BaseChatModel]:
    import anthropic
    from langchain_anthropic import ChatAnthropic

    class LoopChatAnthropic(ChatAnthropic):
        """ChatAnthropic with an httpx client of its own (see above)."""

        @cached_property
        def _async_client(self) -> anthropic.AsyncClient:
            params = self._client_params
            http = anthropic.DefaultAsyncHttpxClient(timeout=settings.MODEL_REQUEST_TIMEOUT_S)
            return anthropic.AsyncClient(**params, http_client=http)

    return LoopChatAnthropic


def _anthropic(endpoint: EndpointConfig) -> LangchainModel:
    kwargs: dict[str, Any] = {
        "model": endpoint.model_id,
        "api_key": _api_key(endpoint, required=True),
        "temperature": endpoint.temperature,
        "max_tokens": endpoint.max_output_tokens,
        "timeout": settings.MODEL_REQUEST_TIMEOUT_S,
        "max_retries": 0,
        "streaming": True,
    }
    if endpoint.base_url:
        kwargs["base_url"] = endpoint.base_url
    return _anthropic_class()(**kwargs)


def _fake(endpoint: EndpointConfig) -> LangchainModel:
    """langchain-core's fake chat model: the network edge stand-in for tests and offline demos.

    options: {"responses": [...], "sleep": seconds per chunk, "error_on_chunk": n,
    "tool_calls": [[{"name": ..., "args": {...}}], ...], "choices": ["{json}", ...]}
    (see `chatbot.llm.fake`)
    """
    from chatbot.llm.fake import ScriptedChatModel

    options = endpoint.options
    return ScriptedChatModel(
        responses=list(options.get("responses") or ["This is a fake answer."]),
        sleep=options.get("sleep"),
        error_on_chunk_number=options.get("error_on_chunk"),
        tool_calls=list(options.get("tool_calls") or []),
        choices=list(options.get("choices") or []),
    )


def _local_hf(endpoint: EndpointConfig) -> LangchainModel:
    """A Hugging Face model directory (`model_id` is its path) generated in this process; what a
    local fine-tuning job registers (`chatbot.llm.local_hf`). Chat style only: the directory's
    own chat template shapes the prompt."""
    from chatbot.llm.local_hf import LocalHFChatModel

    return LocalHFChatModel(
        path=endpoint.model_id,
        max_new_tokens=endpoint.max_output_tokens,
        temperature=endpoint.temperature,
    )


PROVIDERS: dict[str, ProviderBuilder] = {
    "openai": _openai,
    "anthropic": _anthropic,
    "fake": _fake,
    "local_hf": _local_hf,
}

# Keyed by the fields that shape the client: an edited endpoint gets a fresh one, an unchanged one reuses its
# connection pool, which saves a TCP and TLS handshake on every turn. Kept per event loop: an async
# client's pool belongs to the loop it first ran on, and sync callers (Celery tasks through
# async_to_sync) get a new loop per call, on which a cached client fails with "Event loop is
# closed". Under daphne there is one loop, so one cache.
_caches: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[object, ...], LangchainModel]
]
_caches = weakref.WeakKeyDictionary()
_no_loop_cache: dict[tuple[object, ...], LangchainModel] = {}
_CACHE_LIMIT = 64


def _cache() -> dict[tuple[object, ...], LangchainModel]:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return _no_loop_cache
    cache = _caches.get(loop)
    if cache is None:
        cache = _caches[loop] = {}
    return cache


def model_for(endpoint: EndpointConfig) -> LangchainModel:
    builder = PROVIDERS.get(endpoint.provider)
    if builder is None:
        raise ModelError(
            f"The model '{endpoint.name}' uses an unknown provider.",
            detail=f"unknown provider {endpoint.provider!r}",
        )
    if endpoint.provider == "fake":
        # The fake keeps a cursor into its responses; a fresh one per call keeps tests independent.
        return builder(endpoint)
    key = (
        endpoint.id,
        endpoint.version,
        endpoint.provider,
        endpoint.base_url,
        endpoint.model_id,
        endpoint.style,
        endpoint.api_key_name,
    )
    cache = _cache()
    model = cache.get(key)
    if model is None:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        model = cache[key] = builder(endpoint)
    return model
