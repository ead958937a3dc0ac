"""Grounded answers: retrieval as the asker, numbered context, citations, "I don't know",
escalation. Real Postgres + pgvector + MiniLM; the model is langchain-core's fake at the edge."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chatbot.agent.grounding import SOURCES_OPEN, cited_numbers
from chatbot.agent.turn import _prepare, turn_run
from chatbot.chat import selectors, services
from chatbot.knowledge import services as knowledge_services
from chatbot.models import AssistantSettings, Citation, Escalation, ModelEndpoint, Span, Turn
from chatbot.telemetry.tracing import Tracer
from tests.knowledge.test_search import KnowledgeBase, make_knowledge_base

PASSWORD_QUESTION = "How do I reset a forgotten password?"
OFF_TOPIC_QUESTION = "What is the capital of Mongolia?"


def _configure(**fields: object) -> AssistantSettings:
    config, _ = AssistantSettings.objects.update_or_create(pk=1, defaults=fields)
    return config


def _turn(user: User, text: str) -> Turn:
    conversation = services.conversation_create(owner=user)
    return services.turn_create(conversation=conversation, user_text=text)


async def _run(turn: Turn) -> tuple[str, object]:
    pieces: list[str] = []

    async def emit(text: str) -> None:
        pieces.append(text)

    outcome = await turn_run(turn_id=turn.pk, emit=emit)
    return "".join(pieces), outcome


@pytest.fixture
def kb(cast: dict[str, User]) -> KnowledgeBase:
    return make_knowledge_base()


# --- building the prompt -------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_gives_the_model_numbered_sources_from_what_the_asker_may_see(
    kb: KnowledgeBase, alice: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    _configure(grounding="required", retrieval_k=5, min_similarity=0.3)
    fake_endpoint()
    prepared = _prepare(_turn(alice, PASSWORD_QUESTION).pk, None, None, Tracer())

    assert not prepared.grounding.no_answer
    assert prepared.grounding.hits[0].external_id == "pw-reset"
    assert {h.collection_id for h in prepared.grounding.hits} == {kb.help.pk}
    # The instructions are the system's; the passages are data in a user-role block.
    [context] = [m for m in prepared.prompt.messages if m.data]
    assert context.role == "user" and context.content.startswith(SOURCES_OPEN)
    assert "[1] Reset a password" in context.content
    assert prepared.prompt.messages[-2] == context, "the passages come just before the question"
    system = "\n".join(m.content for m in prepared.prompt.messages if m.role == "system")
    assert "cite its source as [1], [2]" in system and "Reset a password" not in system
    assert prepared.prompt.question == PASSWORD_QUESTION
    assert prepared.grounding.kb_versions == {str(kb.help.pk): kb.help.version}


@pytest.mark.django_db
def test_it_does_not_know_when_similar_passages_miss_the_questions_own_terms(
    kb: KnowledgeBase, alice: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    """The password passage is similar to a question about a payroll system's hardware token,
    but covers only 3 of its 7 content words: under the coverage threshold, "I don't know"."""
    question = "How do I reset a forgotten password for the payroll system hardware token?"
    fake_endpoint()
    # The no-answer classifier is off: this is the coverage check on its own.
    _configure(
        grounding="required", retrieval_k=5, min_similarity=0.2, min_coverage=0.0, min_answerable=0
    )
    tracer = Tracer()
    lenient = _prepare(_turn(alice, question).pk, None, None, tracer)
    assert not lenient.grounding.no_answer, "with the check off the similar passage is used"

    _configure(min_coverage=0.5)
    tracer = Tracer()
    strict = _prepare(_turn(alice, question).pk, None, None, tracer)
    assert strict.grounding.no_answer and strict.route is None
    assert "cover" in strict.grounding.reason
    span = next(r for r in tracer.records if r.kind == "retrieval")
    assert span.attributes["coverage"] < 0.5 and span.attributes["min_coverage"] == 0.5

    _configure(min_coverage=0.5)
    covered = _prepare(_turn(alice, PASSWORD_QUESTION).pk, None, None, Tracer())
    assert not covered.grounding.no_answer, "a question the passage answers still gets it"


@pytest.mark.django_db
def test_it_never_gives_a_chunk_from_a_collection_the_asker_cannot_see(
    kb: KnowledgeBase, alice: User, adam: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    _configure(grounding="preferred", retrieval_k=10, min_similarity=0.0)
    fake_endpoint()
    question = "Who approves payroll corrections for a salary paid in error?"
    for_alice = _prepare(_turn(alice, question).pk, None, None, Tracer()).grounding
    for_adam = _prepare(_turn(adam, question).pk, None, None, Tracer()).grounding
    assert "payroll" not in [h.external_id for h in for_alice.hits]
    assert {h.collection_id for h in for_alice.hits} <= {kb.help.pk}
    assert for_adam.hits[0].external_id == "payroll"


@pytest.mark.django_db
def test_the_no_answer_classifier_decides_with_the_admins_threshold(
    kb: KnowledgeBase, alice: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    fake_endpoint()
    _configure(grounding="required", min_similarity=0.0, min_coverage=0.0, min_answerable=0.0)
    tracer = Tracer()
    off = _prepare(_turn(alice, PASSWORD_QUESTION).pk, None, None, tracer)
    assert not off.grounding.no_answer, "0 turns the check off"
    span = next(r for r in tracer.records if r.kind == "retrieval")
    probability = span.attributes["answerable"]
    assert 0 < probability < 1 and "answerable" in off.grounding.reason

    _configure(min_answerable=min(1.0, probability + 0.01))
    strict = _prepare(_turn(alice, PASSWORD_QUESTION).pk, None, None, Tracer())
    assert strict.grounding.no_answer and strict.route is None
    assert f"answerable {probability:.2f} <" in strict.grounding.reason


# --- a grounded turn, end to end ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_it_answers_with_citations_and_records_retrieval(
    alice: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    kb = await sync_to_async(make_knowledge_base)()
    await sync_to_async(_configure)(grounding="required", retrieval_k=3, min_similarity=0.3)
    await sync_to_async(fake_endpoint)(["Open the sign-in page and click Forgot password [1]."])
    turn = await sync_to_async(_turn)(alice, PASSWORD_QUESTION)

    answer, _ = await _run(turn)

    saved = await Turn.objects.aget(pk=turn.pk)
    assert saved.status == Turn.Status.DONE and not saved.no_answer
    assert answer == saved.answer and "[1]" in answer
    assert saved.kb_versions == {str(kb.help.pk): kb.help.version}
    citations = [c async for c in Citation.objects.filter(turn=saved).select_related("chunk")]
    assert citations[0].number == 1 and citations[0].cited
    first_doc = await sync_to_async(lambda: citations[0].chunk.document.external_id)()
    assert first_doc == "pw-reset"
    assert all(not c.cited for c in citations[1:])
    spans = {s.kind: s async for s in Span.objects.filter(turn=saved)}
    assert set(spans) == {"agent", "retrieval", "llm"}
    retrieval = spans["retrieval"]
    assert retrieval.attributes["chunk_ids"][0] == citations[0].chunk_id
    assert len(retrieval.attributes["scores"]) == len(retrieval.attributes["chunk_ids"])
    assert retrieval.attributes["top_similarity"] >= 0.3


@pytest.mark.django_db(transaction=True)
async def test_it_says_it_does_not_know_instead_of_asking_the_model(
    alice: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    await sync_to_async(make_knowledge_base)()
    config = await sync_to_async(_configure)(grounding="required", min_similarity=0.3)
    # A model that would fail if it were called: the answer must not come from it.
    await sync_to_async(fake_endpoint)(["made up"], error_on_chunk=0)
    turn = await sync_to_async(_turn)(alice, OFF_TOPIC_QUESTION)

    answer, _ = await _run(turn)

    saved = await Turn.objects.aget(pk=turn.pk)
    assert saved.status == Turn.Status.DONE and saved.no_answer
    assert answer == saved.answer == config.no_answer_message
    assert "Needs a human" in answer
    assert saved.endpoint_id is None and "nothing relevant" in saved.route_reason
    assert not await Citation.objects.filter(turn=saved).aexists()
    kinds = {s.kind async for s in Span.objects.filter(turn=saved)}
    assert kinds == {"agent", "retrieval"}


@pytest.mark.django_db
def test_the_admin_threshold_decides_what_counts_as_relevant(
    kb: KnowledgeBase, alice: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    fake_endpoint()
    _configure(grounding="required", min_similarity=0.3)
    assert not _prepare(
        _turn(alice, PASSWORD_QUESTION).pk, None, None, Tracer()
    ).grounding.no_answer
    _configure(grounding="required", min_similarity=0.95)
    strict = _prepare(_turn(alice, PASSWORD_QUESTION).pk, None, None, Tracer())
    assert strict.grounding.no_answer and strict.route is None


@pytest.mark.django_db
def test_preferred_grounding_lets_the_model_answer_without_context(
    kb: KnowledgeBase, alice: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    fake_endpoint()
    _configure(grounding="preferred", min_similarity=0.3)
    prepared = _prepare(_turn(alice, OFF_TOPIC_QUESTION).pk, None, None, Tracer())
    assert not prepared.grounding.no_answer and prepared.grounding.hits == []
    assert prepared.route is not None
    assert not any(m.data or SOURCES_OPEN in m.content for m in prepared.prompt.messages)


def test_it_reads_the_cited_numbers_among_those_it_gave() -> None:
    answer = "Reset it [1]. The link lasts 30 minutes [2, 3]. See also [9] and [x]."
    assert cited_numbers(answer, available=3) == {1, 2, 3}
    assert cited_numbers("No citations here.", available=3) == set()


# --- what the person sees -----------------------------------------------------------------------


def _finished_grounded_turn(user: User, kb: KnowledgeBase, answer: str) -> Turn:
    turn = _turn(user, PASSWORD_QUESTION)
    Turn.objects.filter(pk=turn.pk).update(status=Turn.Status.DONE, answer=answer)
    chunk = kb.help.chunks.get(document__external_id="pw-reset")
    Citation.objects.create(
        turn=turn, chunk=chunk, number=1, score=0.03, similarity=0.7, cited=True
    )
    return Turn.objects.get(pk=turn.pk)


@pytest.mark.django_db
def test_the_chat_links_each_citation_to_its_passage_and_escapes_the_answer(
    kb: KnowledgeBase, alice: User, client_as: Callable[[User], Client]
) -> None:
    turn = _finished_grounded_turn(alice, kb, "Click Forgot password [1]. <script>x()</script>")
    page = client_as(alice).get(reverse("chat:conversation", args=[turn.conversation_id]))
    html = page.content.decode()
    chunk = turn.citations.get().chunk
    anchor = f"/knowledge/documents/{chunk.document_id}/#chunk-{chunk.pk}"
    assert f'href="{anchor}"' in html
    assert "<script>x()" not in html
    assert "Passages given to the answer" in html  # the sources panel shows the latest answer
    document = client_as(alice).get(anchor.split("#")[0])
    assert f'id="chunk-{chunk.pk}"' in document.content.decode()


@pytest.mark.django_db
def test_the_sources_panel_is_only_for_the_answers_owner(
    kb: KnowledgeBase,
    alice: User,
    rita: User,
    nora: User,
    client_as: Callable[[User], Client],
) -> None:
    turn = _finished_grounded_turn(alice, kb, "Click Forgot password [1].")
    url = reverse("chat:sources", args=[turn.pk])
    assert "Reset a password" in client_as(alice).get(url).content.decode()
    assert client_as(rita).get(url).status_code == 404
    assert client_as(nora).get(url).status_code == 403


@pytest.mark.django_db
def test_deleting_a_source_removes_the_citations_made_from_it(
    kb: KnowledgeBase, alice: User
) -> None:
    turn = _finished_grounded_turn(alice, kb, "Click Forgot password [1].")
    source = kb.help.sources.get()
    knowledge_services.source_delete(source=source)
    assert not Citation.objects.filter(turn=turn).exists()
    assert Turn.objects.filter(pk=turn.pk).exists()


# --- escalation ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_person_can_hand_an_answer_over_to_a_human_once(
    kb: KnowledgeBase, alice: User, client_as: Callable[[User], Client]
) -> None:
    turn = _finished_grounded_turn(alice, kb, "I don't know.")
    url = reverse("chat:escalate", args=[turn.pk])
    client = client_as(alice)
    response = client.post(url, {"reason": "Customer is waiting"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "Needs a human" in response.content.decode()
    client.post(url, {"reason": "again"}, HTTP_HX_REQUEST="true")
    escalation = Escalation.objects.get(turn=turn)
    assert escalation.requested_by == alice and escalation.reason == "Customer is waiting"
    assert selectors.escalations_count() == 1
    page = client.get(reverse("chat:conversation", args=[turn.conversation_id]))
    assert "Escalated" in page.content.decode()


@pytest.mark.django_db
def test_escalation_is_refused_for_others_and_for_unfinished_answers(
    alice: User, rita: User, nora: User, client_as: Callable[[User], Client]
) -> None:
    running = _turn(alice, "still being answered")
    url = reverse("chat:escalate", args=[running.pk])
    assert client_as(rita).post(url).status_code == 404
    assert client_as(nora).post(url).status_code == 403
    refused = client_as(alice).post(url, HTTP_HX_REQUEST="true")
    assert refused.status_code == 400 and "Wait for the answer" in refused.content.decode()
    assert not Escalation.objects.exists()
