"""The answer cache: exact and semantic hits, only judge-passed answers, a knowledge-base change
retiring entries, and the asker's access scope. Real Postgres + pgvector + MiniLM + the real
judges; the model is langchain-core's fake at the network edge. Once an answer is judged, the fake
is told to say NOT_CACHED (an update that leaves the endpoint's version, part of the cache key,
alone), so whether the model was asked shows in the answer itself."""

from __future__ import annotations

from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User

from chatbot.accounts import roles
from chatbot.accounts.services import user_create
from chatbot.agent.cache import (
    answer_cache_lookup,
    answer_cache_retire_stale,
    answer_cache_store,
    question_normalise,
)
from chatbot.agent.turn import turn_run
from chatbot.chat import services
from chatbot.knowledge import services as knowledge_services
from chatbot.knowledge.tasks import answer_cache_retire_task
from chatbot.models import (
    AnswerCacheEntry,
    AssistantSettings,
    Citation,
    Feedback,
    Judge,
    ModelEndpoint,
    Source,
    Span,
    ToolSetting,
    Turn,
)
from evaluation.selectors import judges_active
from evaluation.services import judge_new_version, judges_ensure
from evaluation.tasks import judge_run_task
from tests.knowledge.test_search import KnowledgeBase, make_knowledge_base

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = "How long is the password reset link valid?"
ANSWER = "The reset link expires after 30 minutes [1]."
NOT_CACHED = "NOT_CACHED: the model was asked."
CLOSE = "How long is the password reset link valid for?"  # similarity 0.993 with QUESTION
LOOSE = "How long is the reset link valid?"  # similarity 0.880


@pytest.fixture
def kb(cast: dict[str, User]) -> KnowledgeBase:
    AssistantSettings.objects.update_or_create(
        pk=1, defaults={"grounding": "required", "min_similarity": 0.3, "min_answerable": 0}
    )
    return make_knowledge_base()


@pytest.fixture
def model(fake_endpoint) -> ModelEndpoint:
    return fake_endpoint([ANSWER])


def _model_says(text: str) -> None:
    endpoint = ModelEndpoint.objects.get(name="fake-model")
    ModelEndpoint.objects.filter(pk=endpoint.pk).update(
        options={**endpoint.options, "responses": [text]}
    )


def _turn(user: User, text: str) -> Turn:
    conversation = services.conversation_create(owner=user)
    return services.turn_create(conversation=conversation, user_text=text)


async def _ask(user: User, text: str = QUESTION) -> tuple[str, Turn]:
    turn = await sync_to_async(_turn)(user, text)
    pieces: list[str] = []

    async def emit(piece: str) -> None:
        pieces.append(piece)

    await turn_run(turn_id=turn.pk, emit=emit)
    return "".join(pieces), await Turn.objects.aget(pk=turn.pk)


def _judge(turn: Turn) -> None:
    """Every enabled judge on the turn, as the worker runs them (each task ends by offering the
    turn to the cache once the judges are done)."""
    judges_ensure()
    for judge_id in judges_active().values_list("pk", flat=True):
        judge_run_task(turn.pk, judge_id)


async def _asked_and_judged(user: User, text: str = QUESTION) -> Turn:
    """A model answer to `text`, judged (and so cached); the model says NOT_CACHED from then on."""
    await sync_to_async(_model_says)(ANSWER)
    answer, turn = await _ask(user, text)
    assert answer == ANSWER and turn.cache_result == Turn.Cache.MISS
    await sync_to_async(_model_says)(NOT_CACHED)
    await sync_to_async(_judge)(turn)
    assert await AnswerCacheEntry.objects.filter(source_turn=turn).aexists()
    return turn


def _settings(**fields: object) -> None:
    AssistantSettings.objects.filter(pk=1).update(**fields)


# --- hits ----------------------------------------------------------------------------------------


async def test_it_serves_a_judged_answer_again_with_its_sources(kb, alice, model) -> None:
    first = await _asked_and_judged(alice)
    entry = await AnswerCacheEntry.objects.aget(source_turn=first)
    assert entry.answer == ANSWER and entry.tokens == first.tokens_in + first.tokens_out > 0

    answer, again = await _ask(alice, "  how long is the Password reset link valid ")

    assert answer == ANSWER, "served from the cache, the model not asked"
    assert again.status == Turn.Status.DONE and again.answer == ANSWER
    assert again.cache_result == Turn.Cache.EXACT and again.cached_from_id == first.pk
    assert (again.tokens_in, again.tokens_out, again.cost) == (0, 0, Decimal(0))
    assert again.saved_tokens == entry.tokens and again.saved_cost == first.cost > 0
    assert again.endpoint_id == model.pk and again.route_reason.startswith("answer cache")
    assert again.kb_versions == first.kb_versions and again.ttft_ms is not None

    def citations(turn: Turn) -> list[tuple[int, int, bool]]:
        rows = Citation.objects.filter(turn=turn).order_by("number")
        return list(rows.values_list("chunk_id", "number", "cited"))

    original = await sync_to_async(citations)(first)
    assert original and original[0][2] is True
    assert await sync_to_async(citations)(again) == original
    spans = [s async for s in Span.objects.filter(turn=again).order_by("started_at")]
    assert [s.kind for s in spans] == ["agent", "cache"], "no retrieval, no model call"
    cache = spans[1]
    assert cache.parent_id == spans[0].id
    assert cache.attributes["match"] == "exact" and cache.attributes["entry_id"] == entry.pk
    assert cache.attributes["source_turn_id"] == first.pk
    assert cache.attributes["saved_tokens"] == entry.tokens
    assert spans[0].attributes["cache"] == "exact"
    await entry.arefresh_from_db()
    assert entry.hits == 1 and entry.last_hit_at is not None


async def test_it_serves_a_close_rewording_and_not_a_loose_one(kb, alice, model) -> None:
    await _asked_and_judged(alice)

    answer, close = await _ask(alice, CLOSE)
    assert answer == ANSWER and close.cache_result == Turn.Cache.SEMANTIC
    span = await Span.objects.aget(turn=close, kind="cache")
    assert span.attributes["match"] == "semantic" and span.attributes["similarity"] > 0.99

    answer, loose = await _ask(alice, LOOSE)
    assert answer == NOT_CACHED and loose.cache_result == Turn.Cache.MISS
    root = await Span.objects.aget(turn=loose, kind="agent", parent=None)
    assert 0.85 < root.attributes["cache_nearest_similarity"] < 0.95
    # The vector the lookup made is the one retrieval used: the question was embedded once.
    retrieval = await Span.objects.aget(turn=loose, kind="retrieval")
    assert retrieval.attributes["query_embedded"] is False


async def test_it_follows_the_admins_threshold(kb, alice, model) -> None:
    await _asked_and_judged(alice)
    await sync_to_async(_settings)(cache_similarity=0.85)
    answer, loose = await _ask(alice, LOOSE)
    assert answer == ANSWER and loose.cache_result == Turn.Cache.SEMANTIC

    await sync_to_async(_settings)(cache_similarity=0)  # exact questions only
    answer, close = await _ask(alice, CLOSE)
    assert answer == NOT_CACHED and close.cache_result == Turn.Cache.MISS

    await sync_to_async(_settings)(cache_enabled=False)
    answer, same = await _ask(alice)
    assert answer == NOT_CACHED and same.cache_result == ""


def test_it_normalises_case_spacing_and_end_punctuation() -> None:
    assert question_normalise("  How long is\tthe LINK valid ?! ") == "how long is the link valid"
    assert question_normalise("Ｈow") == "how"


# --- only judged answers, once ------------------------------------------------------------------


async def test_it_stores_an_answer_only_once_every_judge_passed_it(kb, alice, model) -> None:
    answer, turn = await _ask(alice)
    assert answer == ANSWER

    def run_all_but_one() -> None:
        judges_ensure()
        ids = list(judges_active().values_list("pk", flat=True))
        for judge_id in ids[:-1]:
            judge_run_task(turn.pk, judge_id)
        assert not AnswerCacheEntry.objects.exists(), "a judge has still to look at it"
        judge_run_task(turn.pk, ids[-1])

    await sync_to_async(run_all_but_one)()
    assert await AnswerCacheEntry.objects.filter(source_turn=turn).aexists()

    # Judged again (a redelivered task): still one entry.
    await sync_to_async(_judge)(turn)
    assert await sync_to_async(answer_cache_store)(turn_id=turn.pk) is not None
    assert await AnswerCacheEntry.objects.acount() == 1


async def test_it_never_stores_an_answer_a_judge_failed(kb, alice, model) -> None:
    def strict_format() -> None:
        judges_ensure()
        judge = Judge.objects.filter(name="format").order_by("-version").first()
        assert judge is not None
        judge_new_version(judge=judge, options={"max_chars": 10})

    await sync_to_async(strict_format)()
    answer, turn = await _ask(alice)
    await sync_to_async(_model_says)(NOT_CACHED)
    await sync_to_async(_judge)(turn)

    assert not await AnswerCacheEntry.objects.aexists()
    answer, again = await _ask(alice)
    assert answer == NOT_CACHED and again.cache_result == Turn.Cache.MISS


async def test_it_keeps_a_second_answer_to_the_same_question_out(kb, alice, model) -> None:
    """One live entry per key: the first judged answer stays, a later one is not stored."""
    await _asked_and_judged(alice)
    await sync_to_async(_settings)(cache_enabled=False)
    _, later = await _ask(alice)
    await sync_to_async(_settings)(cache_enabled=True)
    await Turn.objects.filter(pk=later.pk).aupdate(cache_result=Turn.Cache.MISS)
    await sync_to_async(_judge)(later)
    assert await AnswerCacheEntry.objects.acount() == 1


async def test_it_leaves_follow_ups_replays_and_personal_data_alone(kb, alice, model) -> None:
    first = await _asked_and_judged(alice)

    def follow_up() -> Turn:
        return services.turn_create(conversation=first.conversation, user_text=QUESTION)

    turn = await sync_to_async(follow_up)()

    async def emit(piece: str) -> None:
        pass

    await turn_run(turn_id=turn.pk, emit=emit)
    turn = await Turn.objects.aget(pk=turn.pk)
    assert turn.cache_result == "" and turn.answer == NOT_CACHED, "it depends on what came before"
    root = await Span.objects.aget(turn=turn, kind="agent", parent=None)
    assert root.attributes["cache_skipped"] == "a follow-up question"

    _, personal = await _ask(alice, "How long is the reset link for jane.doe@example.com valid?")
    await sync_to_async(_judge)(personal)
    assert not await AnswerCacheEntry.objects.filter(source_turn=personal).aexists()


# --- a knowledge-base change ---------------------------------------------------------------------


async def test_it_stops_serving_when_a_collection_changes_then_retires(kb, alice, model) -> None:
    first = await _asked_and_judged(alice)
    entry = await AnswerCacheEntry.objects.aget(source_turn=first)
    source = await Source.objects.aget(collection=kb.help)

    # Switching a source off moves the collection's version; nothing retired the entry yet.
    await sync_to_async(knowledge_services.source_set_enabled)(source=source, enabled=False)
    await entry.arefresh_from_db()
    assert entry.retired_at is None
    await sync_to_async(knowledge_services.source_set_enabled)(source=source, enabled=True)

    answer, again = await _ask(alice)
    assert answer == NOT_CACHED, "the version is in the key: unreachable before any clean-up"
    assert again.cache_result == Turn.Cache.MISS

    assert await sync_to_async(answer_cache_retire_task)(kb.admin.pk) == 0, "not its collection"
    assert await sync_to_async(answer_cache_retire_task)(kb.help.pk) == 1
    assert await sync_to_async(answer_cache_retire_task)(kb.help.pk) == 0, "safe to run twice"
    await entry.arefresh_from_db()
    assert entry.retired_at is not None and "collection" in entry.retired_reason


async def test_it_retires_entries_of_a_deleted_source_in_the_sweep(kb, alice, model) -> None:
    first = await _asked_and_judged(alice)
    source = await Source.objects.aget(collection=kb.help)
    await sync_to_async(knowledge_services.source_delete)(source=source)

    assert await sync_to_async(answer_cache_retire_stale)() == 1
    entry = await AnswerCacheEntry.objects.aget(source_turn=first)
    assert entry.retired_at is not None


async def test_it_retires_an_answer_thumbed_down(kb, alice, model) -> None:
    first = await _asked_and_judged(alice)
    _, hit = await _ask(alice)
    assert hit.cache_result == Turn.Cache.EXACT

    await sync_to_async(services.feedback_set)(turn=hit, user=alice, rating=Feedback.Rating.DOWN)

    entry = await AnswerCacheEntry.objects.aget(source_turn=first)
    assert entry.retired_at is not None and entry.retired_reason == "thumbed down"
    answer, _ = await _ask(alice)
    assert answer == NOT_CACHED


# --- access scope --------------------------------------------------------------------------------


async def test_it_never_serves_an_answer_across_access_scopes(kb, alice, adam, model) -> None:
    """Adam sees every collection, Alice only the help centre: neither gets the other's entry,
    by the same question or a close one; a second agent, who sees what Alice sees, does."""
    first = await _asked_and_judged(adam)
    entry = await AnswerCacheEntry.objects.aget(source_turn=first)
    assert set(entry.kb_versions) == {str(kb.help.pk), str(kb.admin.pk), str(kb.hidden.pk)}

    for text in (QUESTION, CLOSE):
        answer, turn = await _ask(alice, text)
        assert answer == NOT_CACHED and turn.cache_result == Turn.Cache.MISS
    assert await AnswerCacheEntry.objects.acount() == 1

    bob = await sync_to_async(user_create)(
        username="bob", password="bob-password-1", role=roles.AGENT
    )
    alices = await _asked_and_judged(alice, LOOSE)
    answer, turn = await _ask(bob, "How long is the reset link valid for?")
    assert answer == ANSWER and turn.cache_result == Turn.Cache.SEMANTIC
    assert turn.cached_from_id == alices.pk
    answer, turn = await _ask(adam, QUESTION)
    assert turn.cache_result == Turn.Cache.EXACT and turn.cached_from_id == first.pk


def test_it_scopes_by_visible_collections_and_their_versions(kb, alice, adam, model) -> None:
    turn_a, turn_b = _turn(alice, QUESTION), _turn(adam, QUESTION)
    scope_a = answer_cache_lookup(turn_id=turn_a.pk, requested_model=None).scope
    scope_b = answer_cache_lookup(turn_id=turn_b.pk, requested_model=None).scope
    assert scope_a is not None and scope_b is not None
    assert scope_a.kb_versions == {str(kb.help.pk): kb.help.version}
    assert scope_a.hash != scope_b.hash
    knowledge_services.collection_version_bump(collection_id=kb.admin.pk)
    again = answer_cache_lookup(turn_id=_turn(alice, QUESTION).pk, requested_model=None).scope
    assert again == scope_a, "a collection Alice cannot see leaves her scope alone"
    knowledge_services.collection_version_bump(collection_id=kb.help.pk)
    moved = answer_cache_lookup(turn_id=_turn(alice, QUESTION).pk, requested_model=None).scope
    assert moved is not None and moved.hash != scope_a.hash


# --- never tools ---------------------------------------------------------------------------------


async def test_it_never_caches_an_answer_built_with_tools(kb, alice, fake_endpoint) -> None:
    from chatbot.agent.tools.access import tools_ensure

    def draft_for_agents() -> ModelEndpoint:
        tools_ensure()
        ToolSetting.objects.filter(name="draft").update(enabled=True, roles=["agent"])
        endpoint = fake_endpoint(["Here is the draft [1]."], tool_calling="native")
        args = {"template": "refund_reply", "fields": {"name": "Maria", "amount": "20 EUR",
                "days": "5"}}  # fmt: skip
        endpoint.options["tool_calls"] = [[{"name": "draft", "args": args}]]
        endpoint.save()
        return endpoint

    await sync_to_async(draft_for_agents)()
    text = "Draft a refund reply to Maria for 20 EUR."
    answer, turn = await _ask(alice, text)
    assert answer == "Here is the draft [1]." and turn.cache_result == ""
    await sync_to_async(_judge)(turn)
    assert not await AnswerCacheEntry.objects.aexists()


# --- the hot path --------------------------------------------------------------------------------


def test_it_finds_an_exact_hit_in_few_queries(
    kb, alice, model, django_assert_max_num_queries
) -> None:
    """Everything before the answer is on the time-to-first-token path: the turn and its owner,
    the history, the settings, the person's collections (and permissions), the route, the entry."""
    from asgiref.sync import async_to_sync

    async_to_sync(_asked_and_judged)(alice)
    turn = _turn(alice, QUESTION)
    with django_assert_max_num_queries(8):
        looked = answer_cache_lookup(turn_id=turn.pk, requested_model=None)
    assert looked.hit is not None and looked.hit.match == "exact"
    assert looked.vector is None, "an exact hit embeds nothing"


async def test_it_leaves_no_answer_to_the_pipeline_when_no_model_is_enabled(kb, alice) -> None:
    """The lookup needs the route; with no model enabled the pipeline still says it doesn't know
    (that needs no model) instead of failing."""
    await ModelEndpoint.objects.all().aupdate(enabled=False)
    answer, turn = await _ask(alice, "What is the capital of Mongolia?")
    assert turn.status == Turn.Status.DONE and turn.no_answer and turn.cache_result == ""
    assert answer.startswith("I couldn't find this in the knowledge base")


async def test_it_retires_an_entry_when_a_judge_fails_a_served_copy(kb, alice, model) -> None:
    """Judges change (a new version, a stricter threshold): the first copy they fail ends it."""
    first = await _asked_and_judged(alice)
    _, hit = await _ask(alice)
    assert hit.cache_result == Turn.Cache.EXACT

    def stricter_and_judged() -> None:
        judge = Judge.objects.filter(name="format").order_by("-version").first()
        assert judge is not None
        judge_new_version(judge=judge, options={"max_chars": 10})
        _judge(hit)

    await sync_to_async(stricter_and_judged)()
    entry = await AnswerCacheEntry.objects.aget(source_turn=first)
    assert entry.retired_reason == "a judge failed the answer"
    answer, _ = await _ask(alice)
    assert answer == NOT_CACHED
