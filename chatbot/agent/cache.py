"""The answer cache: a question asked again gets an earlier answer that passed every judge, in
milliseconds and without a model call, and never one its asker could not have been given.

- **Scope.** Everything an answer depends on besides the question: the exact set of collections
  the asker may read with each one's version, the endpoint the router starts from (id and
  version), the prompt version and the grounding settings. Entries are only ever looked up inside
  the asker's scope, so a person never gets an answer built from passages they may not read, and
  an ingestion or a deletion (each moves its collection's version) makes the collection's entries
  unreachable at once; `answer_cache_retire_stale` marks them retired afterwards (clean-up only).
- **Exact** lookup: the scope and the normalised question (case, spacing, end punctuation).
  **Semantic**: the nearest question of the scope by cosine similarity, from the admin's
  threshold (`AssistantSettings.cache_similarity`; 0 turns it off). The question's vector is then
  reused by retrieval on a miss, so the semantic lookup costs a miss one small query.
- **What is cached.** Only the plain "search, then answer" pipeline (never an answer the agent
  built from tools, never a replay, a caller's own prompt or generation settings), only a
  question that opens its conversation (a follow-up depends on what came before), and only once
  every enabled judge has passed the answer (evaluation calls `answer_cache_store`). A question
  with personal data in it is never kept.
- **A hit** is a turn like any other (traced with a `cache` span, judged, reviewable), with the
  cited passages copied, zero model tokens, and what the original answer cost as "saved".
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import BooleanField, Case, Q, Value, When
from django.utils import timezone
from pgvector.django import CosineDistance

from chatbot.accounts.visibility import collections_visible_to
from chatbot.agent.grounding import GROUNDING_INSTRUCTIONS, assistant_settings
from chatbot.agent.prepare import prompt_for_turn, turn_asker
from chatbot.agent.records import CacheMark, CitationRecord
from chatbot.compliance.pii import pii_find
from chatbot.llm.embeddings import embeddings
from chatbot.llm.prompts import DEFAULT_SYSTEM_PROMPT
from chatbot.llm.router import Route, route_choose
from chatbot.llm.types import EndpointConfig, NoModelAvailable, Prompt
from chatbot.models import (
    AnswerCacheEntry,
    AssistantSettings,
    Citation,
    Collection,
    Escalation,
    Feedback,
    Span,
    Turn,
)
from chatbot.telemetry.metrics import cache_observe

logger = logging.getLogger(__name__)

_END_PUNCTUATION = re.compile(r"[\s?!.。？！]+$")
_SPACES = re.compile(r"\s+")


def question_normalise(text: str) -> str:
    """The question as the exact lookup compares it: Unicode-normalised, case-folded, spacing
    collapsed, end punctuation dropped ("How do I reset my password?" = "how do i reset my
    password")."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _END_PUNCTUATION.sub("", _SPACES.sub(" ", folded).strip())


def prompt_version(
    endpoint: EndpointConfig, version_id: int | None, instructions_version_id: int | None = None
) -> str:
    """What the model is told besides the question, as a short hash: the published system
    prompt's version and the published answer instructions' (published text is never edited, so
    an id stands for its words; the built-in text before any is published) and the endpoint's
    completion template."""
    system = f"v{version_id}" if version_id is not None else DEFAULT_SYSTEM_PROMPT
    instructions = (
        f"a{instructions_version_id}"
        if instructions_version_id is not None
        else GROUNDING_INSTRUCTIONS
    )
    text = "\n\x1e".join((system, instructions, endpoint.prompt_template))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _sha(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Scope:
    """Everything but the question an answer depends on, and its hash."""

    hash: str
    kb_versions: dict[str, int]
    endpoint_id: int


def scope_of(
    *,
    kb_versions: dict[str, int],
    endpoint: EndpointConfig,
    config: AssistantSettings,
    prompt_version_id: int | None = None,
    instructions_version_id: int | None = None,
) -> Scope:
    parts = {
        "collections": sorted((int(pk), version) for pk, version in kb_versions.items()),
        "endpoint": [endpoint.id, endpoint.version],
        "prompt": prompt_version(endpoint, prompt_version_id, instructions_version_id),
        "grounding": [
            config.grounding,
            config.retrieval_k,
            config.min_similarity,
            config.min_coverage,
            config.min_answerable,
        ],
    }
    return Scope(hash=_sha(parts), kb_versions=dict(kb_versions), endpoint_id=endpoint.id)


def cache_key(scope: Scope, question: str) -> str:
    return _sha([scope.hash, question_normalise(question)])


# --- the read path: turn_run's plain pipeline ------------------------------------------------


@dataclass
class CacheHit:
    entry_id: int
    source_turn_id: int
    source_endpoint_id: int  # the model that wrote the answer
    answer: str
    match: str  # Turn.Cache.EXACT or SEMANTIC
    similarity: float
    citations: list[CitationRecord]
    saved_tokens: int
    saved_cost: Decimal


@dataclass
class CacheLookup:
    """What the lookup read about the turn; on a miss, the pipeline goes on with it (the prompt,
    the person, the settings and the question's vector are not read twice)."""

    prompt: Prompt
    user: User
    config: AssistantSettings
    route: Route | None = None
    scope: Scope | None = None
    vector: list[float] | None = None
    hit: CacheHit | None = None
    mark: CacheMark | None = None  # what the turn records (None: it did not look)
    attributes: dict[str, Any] = field(default_factory=dict)  # for the turn's root span


_HIT_FIELDS = ("pk", "answer", "citations", "source_turn_id", "endpoint_id", "tokens", "cost")


def answer_cache_lookup(
    *,
    turn_id: int,
    requested_model: str | None,
    prompt: Prompt | None = None,
    config: AssistantSettings | None = None,
) -> CacheLookup:
    """Look for an answer to the turn's question in its asker's scope. Runs before retrieval, in
    the turn's one hop to a thread; a turn that may not use the cache gets `mark` None.

    `prompt` and `config` replace the published prompt and the saved settings (an A/B test's
    variant, `chatbot.agent.abtest`): both are part of the scope, so a variant only ever finds
    answers given under its own endpoint, prompt version and grounding settings."""
    started = time.perf_counter()
    asker, is_replay = turn_asker(turn_id)
    looked = CacheLookup(
        prompt=prompt or prompt_for_turn(turn_id),
        user=asker,
        config=config or assistant_settings(),
    )
    if not looked.config.cache_enabled or is_replay:
        return looked
    if len(looked.prompt.messages) > 2:
        looked.attributes = {"cache": "skipped", "cache_skipped": "a follow-up question"}
        return looked
    visible = collections_visible_to(looked.user).values_list("pk", "version")
    versions = {str(pk): version for pk, version in visible}
    try:
        looked.route = route_choose(requested=requested_model)
    except NoModelAvailable:
        # Let the pipeline decide: "not in the knowledge base" needs no model.
        return looked
    scope = looked.scope = scope_of(
        kb_versions=versions,
        endpoint=looked.route.endpoint,
        config=looked.config,
        prompt_version_id=looked.prompt.version_id,
        instructions_version_id=looked.prompt.instructions_version_id,
    )
    key = cache_key(scope, looked.prompt.question)
    hit, nearest = _find(looked, key)
    lookup_ms = round((time.perf_counter() - started) * 1000, 2)
    looked.attributes = {
        "cache": hit.match if hit else Turn.Cache.MISS,
        "cache_key": key,
        "cache_scope": scope.hash,
        "cache_kb_versions": versions,
        "cache_lookup_ms": lookup_ms,
    }
    if nearest is not None:
        looked.attributes["cache_nearest_similarity"] = round(nearest, 4)
    looked.hit = hit
    if hit is None:
        looked.mark = CacheMark(result=Turn.Cache.MISS)
        cache_observe(match="", saved_tokens=0, saved_cost=0.0)
        return looked
    looked.mark = CacheMark(
        result=hit.match,
        entry_id=hit.entry_id,
        cached_from_id=hit.source_turn_id,
        saved_tokens=hit.saved_tokens,
        saved_cost=hit.saved_cost,
        citations=hit.citations,
    )
    cache_observe(match=hit.match, saved_tokens=hit.saved_tokens, saved_cost=float(hit.saved_cost))
    return looked


def _find(looked: CacheLookup, key: str) -> tuple[CacheHit | None, float | None]:
    """The exact entry, else the nearest question of the scope from the threshold. One query
    when the key is there or the scope holds nothing; the question is embedded only otherwise."""
    assert looked.scope is not None
    live = AnswerCacheEntry.objects.filter(scope=looked.scope.hash, retired_at__isnull=True)
    exact = Case(When(key=key, then=Value(True)), default=Value(False), output_field=BooleanField())
    first = live.annotate(exact=exact).order_by("-exact").values(*_HIT_FIELDS, "exact").first()
    if first is None:
        return None, None
    if first["exact"]:
        return _hit(first, Turn.Cache.EXACT, 1.0), None
    threshold = looked.config.cache_similarity
    if threshold <= 0:
        return None, None
    looked.vector = embeddings().embed_query(looked.prompt.question)
    nearest = (
        live.annotate(distance=CosineDistance("embedding", looked.vector))
        .order_by("distance")
        .values(*_HIT_FIELDS, "distance")
        .first()
    )
    if nearest is None:  # retired meanwhile
        return None, None
    similarity = 1.0 - float(nearest["distance"])
    if similarity < threshold:
        return None, similarity
    return _hit(nearest, Turn.Cache.SEMANTIC, similarity), None


def _hit(row: dict[str, Any], match: str, similarity: float) -> CacheHit:
    return CacheHit(
        entry_id=row["pk"],
        source_turn_id=row["source_turn_id"],
        source_endpoint_id=row["endpoint_id"],
        answer=row["answer"],
        match=match,
        similarity=round(similarity, 4),
        citations=[CitationRecord(**c) for c in row["citations"]],
        saved_tokens=row["tokens"],
        saved_cost=row["cost"],
    )


# --- the write path: after every judge passed -------------------------------------------------


def _unstorable(turn: Turn) -> str:
    """Why the turn's answer may not be cached, or "" when it may."""
    if turn.status != Turn.Status.DONE or turn.is_replay:
        return "not a finished production turn"
    if turn.cache_result != Turn.Cache.MISS:
        return "not a plain-pipeline turn that looked up the cache and missed"
    if turn.no_answer or not turn.answer.strip() or turn.endpoint_id is None:
        return "no model answer"
    if Feedback.objects.filter(turn=turn, rating=Feedback.Rating.DOWN).exists():
        return "thumbed down"
    if Escalation.objects.filter(turn=turn).exists():
        return "handed to a human"
    if pii_find(turn.user_text):
        return "personal data in the question"
    return ""


def _looked_up(turn_id: int) -> dict[str, Any]:
    root = (
        Span.objects.filter(turn_id=turn_id, kind=Span.Kind.AGENT, parent__isnull=True)
        .values_list("attributes", flat=True)
        .first()
    )
    return root or {}


def answer_cache_store(*, turn_id: int) -> AnswerCacheEntry | None:
    """Keep the turn's answer for the same question in the same scope. Evaluation calls it once
    every enabled judge has passed the turn; safe to call again (one entry per turn and key).
    Returns the entry, or None when the answer may not be cached (see `_unstorable`)."""
    turn = Turn.objects.filter(pk=turn_id).first()
    if turn is None or _unstorable(turn) or not assistant_settings().cache_enabled:
        return None
    assert turn.endpoint_id is not None  # checked by _unstorable
    looked = _looked_up(turn_id)
    key, scope = looked.get("cache_key"), looked.get("cache_scope")
    versions = looked.get("cache_kb_versions")
    if not key or not scope or versions is None:
        return None
    if turn.kb_versions and turn.kb_versions != versions:
        # The knowledge base moved between the lookup and retrieval: the key would be wrong.
        return None
    current = {str(pk): v for pk, v in Collection.objects.values_list("pk", "version")}
    if any(current.get(pk) != version for pk, version in versions.items()):
        return None  # already stale: nobody could reach it
    citations = [
        {"chunk_id": c.chunk_id, "number": c.number, "score": c.score,
         "similarity": c.similarity, "cited": c.cited}
        for c in Citation.objects.filter(turn=turn).order_by("number")
    ]  # fmt: skip
    entry = AnswerCacheEntry(
        key=key,
        scope=scope,
        question=turn.user_text,
        embedding=embeddings().embed_query(turn.user_text),
        answer=turn.answer,
        citations=citations,
        source_turn=turn,
        endpoint_id=turn.endpoint_id,
        kb_versions=versions,
        tokens=turn.tokens_in + turn.tokens_out,
        cost=turn.cost,
    )
    try:
        with transaction.atomic():
            entry.save()
    except IntegrityError:
        # Stored already, or another answer to the same question holds the key.
        return AnswerCacheEntry.objects.filter(source_turn=turn).first()
    return entry


# --- clean-up ------------------------------------------------------------------------------------


def _retire(entries: Iterable[int], reason: str) -> int:
    ids = list(entries)
    if not ids:
        return 0
    return AnswerCacheEntry.objects.filter(pk__in=ids, retired_at__isnull=True).update(
        retired_at=timezone.now(), retired_reason=reason[:200]
    )


def answer_cache_retire_stale(*, collection_id: int | None = None) -> int:
    """Retire the live entries whose scope holds a collection at another version than it is now
    at, or one since deleted (all collections, or the one given). The version in the key already
    keeps them from being served; this keeps the table to what can still be. Safe to run twice."""
    live = AnswerCacheEntry.objects.filter(retired_at__isnull=True)
    if collection_id is not None:
        live = live.filter(kb_versions__has_key=str(collection_id))
    current = {str(pk): v for pk, v in Collection.objects.values_list("pk", "version")}
    stale = [
        pk
        for pk, versions in live.values_list("pk", "kb_versions")
        if any(current.get(c) != v for c, v in versions.items())
    ]
    return _retire(stale, "a collection it read changed (ingestion, deletion or a source switched)")


def answer_cache_retire_turns(*, turn_ids: list[int], reason: str, copies: bool = True) -> int:
    """Retire the entries made from these turns and, with `copies`, those that answered them: a
    thumbs down, a request for a human or a judge failing a cached answer tells against the
    answer; the asker deleting a conversation takes back only their own questions."""
    made = Q(source_turn_id__in=turn_ids)
    if copies:
        made |= Q(source_turn__cache_copies__in=turn_ids)
    entries = AnswerCacheEntry.objects.filter(made, retired_at__isnull=True)
    return _retire(entries.values_list("pk", flat=True).distinct(), reason)
