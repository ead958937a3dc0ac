"""The chat pipeline without a Turn: what a chat turn would answer to one question, for offline
runs (`eval_answers`, experiments) that must leave production figures and settings untouched."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User

from chatbot.agent.prepare import prompt_first, turn_prepare
from chatbot.llm.pricing import usage_cost
from chatbot.llm.stream import astream_text
from chatbot.llm.types import EndpointConfig, ModelError, Prompt, Usage
from chatbot.models import AssistantSettings
from chatbot.retrieval.search import SearchHit
from chatbot.telemetry.tracing import Tracer


async def _collect(endpoint: Any, prompt: Prompt, usage: Usage) -> str:
    return "".join([piece async for piece in astream_text(endpoint, prompt, usage)])


@dataclass
class PipelineAnswer:
    """What a chat turn would have produced for one question, without writing a Turn."""

    answer: str = ""
    no_answer: bool = False  # retrieval found nothing relevant enough; the model was not asked
    error: str = ""
    hits: list[SearchHit] = field(default_factory=list)
    kb_versions: dict[str, int] = field(default_factory=dict)
    endpoint: EndpointConfig | None = None
    usage: Usage = field(default_factory=Usage)
    cost: Decimal = Decimal(0)
    latency_ms: float = 0.0


def pipeline_answer(
    *,
    user: User,
    question: str,
    endpoint_name: str | None,
    runner: asyncio.Runner,
    config: AssistantSettings | None = None,
    system_prompt: str = "",
    instructions: str = "",
    instructions_version_id: int | None = None,
    collection_ids: list[int] | None = None,
    as_of: dict[int, int] | None = None,
) -> PipelineAnswer:
    """Answer `question` the way a chat turn does (the same `turn_prepare` step, then
    `astream_text`), retrieving as `user`. `system_prompt` and `instructions` (the answer
    instructions) replace the published ones when given; `as_of` retrieves from the knowledge
    base as it was at those collection versions.

    A model failure is returned as `error`, not raised: one bad item must not end a run.
    """
    result = PipelineAnswer()
    started = time.perf_counter()
    try:
        prepared = turn_prepare(
            asker=lambda: user,
            prompt=prompt_first(
                question,
                system_prompt=system_prompt,
                instructions=instructions,
                instructions_version_id=instructions_version_id,
            ),
            tracer=Tracer(),
            requested_model=endpoint_name,
            config=config,
            collection_ids=collection_ids,
            as_of=as_of,
        )
    except ModelError as exc:
        result.error = exc.user_message
        result.latency_ms = (time.perf_counter() - started) * 1000
        return result
    grounding, route = prepared.grounding, prepared.route
    result.kb_versions = grounding.kb_versions
    if route is None:
        result.answer, result.no_answer = grounding.no_answer_message, True
    else:
        result.endpoint = route.endpoint
        try:
            # One loop for the whole run: a cached HTTP client's connections belong to it.
            result.answer = runner.run(_collect(route.endpoint, prepared.prompt, result.usage))
            result.cost = usage_cost(route.endpoint, result.usage)
        except ModelError as exc:
            result.error = exc.user_message
    result.hits = grounding.hits
    result.latency_ms = (time.perf_counter() - started) * 1000
    return result
