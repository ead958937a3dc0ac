"""Replay: ask a past turn, or a whole conversation, again against another model endpoint or
system prompt, and the knowledge base as it is now or as it was when each turn ran (its
`Turn.kb_versions`, read through `chatbot.retrieval.search`'s `as_of`), to compare old and new
side by side.

The new turns are made by chat's own services and run through the real turn loop
(`chatbot.agent.turn.turn_run`, with `chatbot.agent.prepare`): retrieval as the
original asker (so they see what that person may see), the route, the model, citations, spans,
and the judges afterwards. They are written to a conversation of their own marked `is_replay`,
each naming its original in `replay_of`, so they stay out of the asker's conversation list, out
of the rollups and out of /metrics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F, Prefetch
from django.utils import timezone

from chatbot.agent.prepare import prompt_for_turn
from chatbot.agent.turn import turn_run
from chatbot.chat import services as chat_services
from chatbot.knowledge.ingest import versions_kept_since
from chatbot.llm.types import Prompt
from chatbot.models import Citation, Conversation, JudgeScore, ModelEndpoint, Replay, Turn

logger = logging.getLogger(__name__)

SYSTEM_PROMPT_LIMIT = 8000


class InvalidReplay(ValueError):
    """The replay cannot start; the message is shown to the admin as it is."""


def _sources(replay: Replay) -> list[Turn]:
    if replay.source_turn_id is not None:
        return [replay.source_turn] if replay.source_turn else []
    return list(
        Turn.objects.filter(
            conversation_id=replay.source_conversation_id or 0,
            is_replay=False,
            status__in=[Turn.Status.DONE, Turn.Status.FAILED, Turn.Status.CANCELLED],
        ).order_by("created_at", "pk")
    )


def _as_of_problem(turn: Turn, *, which: str) -> str:
    """Why the knowledge base as it was on `turn` cannot be read; "" when it can."""
    if not turn.kb_versions:
        return (
            f"{which} read no knowledge base (grounding was off, or it ran before versions were "
            "recorded), so there is no version to go back to. Replay it against the knowledge "
            "base as it is now."
        )
    if turn.created_at < versions_kept_since():
        days = settings.KNOWLEDGE_VERSIONS_KEEP_DAYS
        return (
            f"{which} ran on {turn.created_at:%d %b %Y}, before the last {days} days whose "
            "knowledge-base versions are kept: passages it could read may have been deleted "
            "since. Replay it against the knowledge base as it is now."
        )
    return ""


def replay_as_of(source: Turn) -> dict[int, int]:
    """The collection versions `source` read, for retrieval as of them."""
    return {int(pk): int(version) for pk, version in source.kb_versions.items()}


def replay_create(
    *,
    created_by: User,
    turn: Turn,
    endpoint: ModelEndpoint | None = None,
    system_prompt: str = "",
    scope: str = "turn",
    kb_as_of_original: bool = False,
) -> Replay:
    """Record the replay and queue it once committed. With `kb_as_of_original`, each turn
    retrieves from the knowledge base as it was when that turn ran; refused when a turn has no
    versions to go back to or is older than the kept window (KNOWLEDGE_VERSIONS_KEEP_DAYS)."""
    if turn.is_replay:
        raise InvalidReplay("This turn is itself a replay. Replay its original instead.")
    if not turn.is_finished:
        raise InvalidReplay("Wait for the answer to finish before replaying it.")
    if endpoint is not None and not endpoint.enabled:
        raise InvalidReplay(f"The model '{endpoint.name}' is disabled. Enable it or pick another.")
    if len(system_prompt) > SYSTEM_PROMPT_LIMIT:
        raise InvalidReplay("The system prompt is too long; the limit is 8,000 characters.")
    if scope not in {"turn", "conversation"}:
        raise InvalidReplay("Choose to replay this turn or the whole conversation.")
    replay = Replay(
        created_by=created_by,
        endpoint=endpoint,
        system_prompt=system_prompt.strip(),
        source_turn=turn if scope == "turn" else None,
        source_conversation=turn.conversation if scope == "conversation" else None,
        kb_as_of_original=kb_as_of_original,
    )
    sources = _sources(replay)
    if kb_as_of_original:
        for number, source in enumerate(sources, start=1):
            which = f"Turn {number} of the conversation" if scope == "conversation" else ""
            problem = _as_of_problem(source, which=which or "This turn")
            if problem:
                raise InvalidReplay(problem)
    replay.total = len(sources)
    replay.save()
    from chatbot.jobs import job_submit_on_commit
    from observability.tasks import replay_run_task

    job_submit_on_commit(replay_run_task, replay.pk)
    return replay


def replay_prompt(replay: Replay, *, source: Turn, new: Turn) -> Prompt:
    """The system prompt chosen for the replay, the history, then the original question.

    A single turn keeps its original history; a whole conversation carries the replay's own new
    answers forward, as the conversation would have gone with the new settings."""
    return prompt_for_turn(
        new.pk,
        system_prompt=replay.system_prompt,
        history_of=source.pk if replay.source_turn_id is not None else None,
    )


def _conversation(replay: Replay, source: Turn) -> Conversation:
    if replay.conversation_id is not None and replay.conversation is not None:
        return replay.conversation
    original = source.conversation
    # The asker owns it so retrieval sees what they saw; the title repeats nothing they wrote.
    conversation = chat_services.conversation_create(
        owner=original.owner, channel=original.channel, title=f"Replay {replay.pk}", is_replay=True
    )
    Replay.objects.filter(pk=replay.pk).update(conversation=conversation)
    replay.conversation = conversation
    return conversation


async def _silent(_: str) -> None:
    """Replays stream to no one."""


def replay_run(*, replay_id: int) -> Replay | None:
    """Run (or resume) a replay. Safe to run twice: a source already replayed is skipped."""
    with transaction.atomic():
        replay = (
            Replay.objects.select_for_update(of=("self",))
            .select_related("endpoint", "source_turn__conversation", "conversation")
            .filter(pk=replay_id)
            .first()
        )
        if replay is None or replay.is_finished:
            return replay
        replay.status, replay.started_at = (
            Replay.Status.RUNNING,
            replay.started_at or timezone.now(),
        )
        replay.save(update_fields=["status", "started_at"])
    try:
        sources = _sources(replay)
        done = set()
        if replay.conversation_id:
            done = set(
                Turn.objects.filter(conversation_id=replay.conversation_id).values_list(
                    "replay_of_id", flat=True
                )
            )
        for source in sources:
            if source.pk in done:
                continue
            conversation = _conversation(replay, source)
            as_of = None
            if replay.kb_as_of_original:
                # Checked when the replay was made; the kept window may have passed since.
                if problem := _as_of_problem(source, which=f"Turn {source.pk}"):
                    raise InvalidReplay(problem)
                as_of = replay_as_of(source)
            new = chat_services.turn_create(
                conversation=conversation, user_text=source.user_text, replay_of=source
            )
            async_to_sync(turn_run)(
                turn_id=new.pk,
                emit=_silent,
                requested_model=replay.endpoint.name if replay.endpoint else None,
                prompt=replay_prompt(replay, source=source, new=new),
                replay=True,
                as_of=as_of,
            )
            Replay.objects.filter(pk=replay.pk).update(completed=F("completed") + 1)
    except Exception as exc:
        logger.exception("replay %s failed", replay_id)
        Replay.objects.filter(pk=replay_id).update(
            status=Replay.Status.FAILED,
            error=f"The replay stopped: {type(exc).__name__}: {exc}",
            finished_at=timezone.now(),
        )
        return Replay.objects.get(pk=replay_id)
    Replay.objects.filter(pk=replay_id).update(
        status=Replay.Status.DONE, finished_at=timezone.now()
    )
    return Replay.objects.get(pk=replay_id)


@dataclass
class Pair:
    old: Turn
    new: Turn | None


def replay_pairs(replay: Replay) -> list[Pair]:
    """Each original turn next to its replay (when it has run), with citations and scores."""
    related = (
        Prefetch(
            "citations",
            queryset=Citation.objects.select_related("chunk__document").order_by("number"),
        ),
        Prefetch(
            "judge_scores",
            queryset=JudgeScore.objects.select_related("judge").order_by("judge__name"),
        ),
    )
    made = Turn.objects.filter(conversation_id=replay.conversation_id or 0, is_replay=True)
    new_turns = {
        t.replay_of_id: t for t in made.select_related("endpoint").prefetch_related(*related)
    }
    sources = _sources(replay)
    olds = {
        t.pk: t
        for t in Turn.objects.filter(pk__in=[s.pk for s in sources])
        .select_related("endpoint")
        .prefetch_related(*related)
    }
    return [Pair(old=olds[s.pk], new=new_turns.get(s.pk)) for s in sources if s.pk in olds]
