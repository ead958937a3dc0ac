"""Everything a turn needs before a model can be called: the prompt (system prompt, history,
question), grounding in the knowledge base as the person asking, and the route.

One step for every caller: live turns (`chatbot.agent.turn.turn_run`: chat, the API, replays) and
offline runs (`evaluation.pipeline`: experiments, eval_answers), so what is measured offline is
what production does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import F, Q, QuerySet, Subquery

from chatbot.agent.grounding import (
    GROUNDING_INSTRUCTIONS,
    Grounding,
    ground,
    prompt_with_context,
)
from chatbot.agent.routing import route_step, route_traced, routing_load, sent_texts
from chatbot.llm.prompts import DEFAULT_SYSTEM_PROMPT
from chatbot.llm.router import Route
from chatbot.llm.types import Message, Prompt
from chatbot.models import AssistantSettings, PromptVersion, Turn
from chatbot.runtime.statements import STAND_IN_IDS, Statement
from chatbot.telemetry.tracing import Tracer

# The text each kind of prompt falls back on before any version of it is published.
BUILT_IN = {
    PromptVersion.Kind.SYSTEM: DEFAULT_SYSTEM_PROMPT,
    PromptVersion.Kind.ANSWER: GROUNDING_INSTRUCTIONS,
}


def _published(kind: str = PromptVersion.Kind.SYSTEM) -> QuerySet[PromptVersion]:
    return PromptVersion.objects.filter(kind=kind, status=PromptVersion.Status.PUBLISHED)


def prompt_published(kind: str) -> tuple[int | None, str]:
    """The published version of `kind`: its id and text; the built-in text (id None) before
    any."""
    row = _published(kind).values_list("pk", "text").first()
    return row if row is not None else (None, BUILT_IN[PromptVersion.Kind(kind)])


def system_prompt_published() -> tuple[int | None, str]:
    return prompt_published(PromptVersion.Kind.SYSTEM)


def answer_instructions_published() -> tuple[int | None, str]:
    return prompt_published(PromptVersion.Kind.ANSWER)


def _prompt_rows(turn: int, anchor: int) -> QuerySet[Any]:
    conversation = Turn.objects.filter(pk=anchor).values("conversation_id")
    history = Q(conversation_id=Subquery(conversation[:1]), pk__lt=anchor, status=Turn.Status.DONE)
    return (
        Turn.objects.filter(Q(pk=turn) | history)
        .annotate(
            prompt_id=Subquery(_published().values("pk")[:1]),
            prompt_text=Subquery(_published().values("text")[:1]),
            answer_id=Subquery(_published(PromptVersion.Kind.ANSWER).values("pk")[:1]),
            answer_text=Subquery(_published(PromptVersion.Kind.ANSWER).values("text")[:1]),
        )
        .order_by("-pk")
        .values_list(
            "pk", "user_text", "answer", "prompt_id", "prompt_text", "answer_id", "answer_text"
        )[: settings.CHAT_HISTORY_TURNS + 1]
    )


# Both run before every answer's model call: compiled once per process (chatbot.runtime.statements).
_PROMPT_ROWS = Statement(_prompt_rows, turn=STAND_IN_IDS[0], anchor=STAND_IN_IDS[1])
_ASKER = Statement(
    lambda turn: User.objects.filter(conversations__turns=turn).annotate(
        turn_is_replay=F("conversations__turns__is_replay")
    ),
    turn=STAND_IN_IDS[0],
)


def turn_asker(turn_id: int) -> tuple[User, bool]:
    """Who asked the turn, and whether the turn is a replay."""
    rows = _ASKER.objects(User, turn=turn_id)
    if not rows:
        raise Turn.DoesNotExist(f"turn {turn_id} does not exist")
    return rows[0], bool(rows[0].turn_is_replay)  # type: ignore[attr-defined]


def prompt_for_turn(
    turn_id: int, *, system_prompt: str = "", history_of: int | None = None
) -> Prompt:
    """The published system prompt (or `system_prompt`), the last few finished exchanges, then
    the turn's question.

    The history is the one before `history_of` in its conversation (a replay of one turn keeps its
    original's history), by default the turn's own. One query: it runs before every model call,
    so the published prompt comes along as a subquery (a partial unique index: one row).
    """
    rows = _PROMPT_ROWS.rows(turn=turn_id, anchor=history_of or turn_id)
    question = next((row for row in rows if row[0] == turn_id), None)
    if question is None:
        raise Turn.DoesNotExist(f"turn {turn_id} does not exist")
    version_id, system = (None, system_prompt) if system_prompt else (question[3], question[4])
    messages: list[Message] = [Message("system", system or DEFAULT_SYSTEM_PROMPT)]
    for pk, asked, answer, *_ in reversed(rows):
        if pk != turn_id:
            messages += [Message("user", asked), Message("assistant", answer)]
    messages.append(Message("user", question[1]))
    return Prompt(
        tuple(messages),
        version_id=version_id,
        instructions=question[6] or "",
        instructions_version_id=question[5],
    )


def prompt_first(
    question: str,
    *,
    system_prompt: str = "",
    version_id: int | None = None,
    instructions: str = "",
    instructions_version_id: int | None = None,
) -> Prompt:
    """What `prompt_for_turn` builds for the first turn of a new conversation; without
    `system_prompt`, the published one. The answer instructions are `instructions` (with their
    `instructions_version_id`), else the published ones (offline runs and previews only: a query
    for each published text it reads)."""
    if not system_prompt:
        version_id, system_prompt = system_prompt_published()
    if not instructions:
        instructions_version_id, instructions = answer_instructions_published()
    return Prompt(
        (Message("system", system_prompt), Message("user", question)),
        version_id,
        instructions=instructions,
        instructions_version_id=instructions_version_id,
    )


@dataclass
class Prepared:
    prompt: Prompt
    grounding: Grounding
    route: Route | None  # None when there is nothing to ask a model (no answer in the KB)


def turn_prepare(
    *,
    asker: Callable[[], User],
    prompt: Prompt,
    tracer: Tracer,
    requested_model: str | None = None,
    config: AssistantSettings | None = None,
    collection_ids: list[int] | None = None,
    query_vector: list[float] | None = None,
    as_of: dict[int, int] | None = None,
) -> Prepared:
    """Ground the question as the person `asker()` loads, then route (the routing rules, for the
    answer step: `chatbot.agent.routing`) and fit the context.

    `config` and `collection_ids` let offline runs try other settings without saving them
    (see `chatbot.agent.grounding.ground`); `query_vector` is the question already embedded;
    `as_of` retrieves from the knowledge base as it was at those collection versions.
    Raises `ModelError` when no model can be routed to.
    """
    asker = functools.cache(asker)  # retrieval and a budget rule both read the person
    grounding = ground(
        user=asker,
        question=prompt.question,
        tracer=tracer,
        config=config,
        collection_ids=collection_ids,
        query_vector=query_vector,
        as_of=as_of,
    )
    if grounding.no_answer:
        return Prepared(prompt=prompt, grounding=grounding, route=None)
    routing = routing_load(user=asker, requested=requested_model)
    route = route_traced(
        tracer,
        task="answer",
        decide=lambda: route_step(
            routing,
            task="answer",
            question=prompt.question,
            texts=sent_texts(prompt),
            hits=grounding.hits,
            top_similarity=grounding.top_similarity,
        ),
    )
    prompt = prompt_with_context(grounding, prompt, route.endpoint)
    return Prepared(prompt=prompt, grounding=grounding, route=route)
