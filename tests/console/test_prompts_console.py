"""Prompts as versioned data: the published system prompt in every turn (and in the answer
cache's key), drafts with a preview, the publish gate on a dataset, and regression reruns when the
published prompt or the default model changes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chatbot.agent.cache import scope_of
from chatbot.agent.grounding import GROUNDING_INSTRUCTIONS, assistant_settings
from chatbot.agent.prepare import prompt_for_turn
from chatbot.chat import services as chat
from chatbot.console import services
from chatbot.llm.prompts import DEFAULT_SYSTEM_PROMPT
from chatbot.llm.router import route_choose
from chatbot.models import (
    AssistantSettings,
    Dataset,
    Experiment,
    ModelEndpoint,
    PromptVersion,
    Turn,
)
from evaluation.datasets import runner
from evaluation.datasets import services as datasets
from evaluation.datasets.regression import regression_reruns_queue
from evaluation.offline.data import ItemData

pytestmark = pytest.mark.django_db

ClientAs = Callable[[User], Client]
GOLD = "Click Forgot password; the link lasts 30 minutes."


@pytest.fixture(autouse=True)
def version_one(db: None) -> PromptVersion:
    """The published version 1 of each kind. The migrations make them, but a transactional test
    elsewhere empties the tables after itself, so each test here makes sure of them (idempotent);
    returns the system prompt's."""
    services.prompt_versions_ensure(PromptVersion.Kind.ANSWER)
    return services.prompt_versions_ensure()


def _dataset(name: str = "Password questions", *, regression: bool = False) -> Dataset:
    dataset = datasets.dataset_create(
        name=name,
        items=[
            ItemData(question="How do I reset my password?", expected_answer=GOLD, answers=(GOLD,)),
            ItemData(question="How long does the reset link last?", answers=("30 minutes",)),
        ],
    )
    if regression:
        Dataset.objects.filter(pk=dataset.pk).update(regression=True)
        dataset.refresh_from_db()
    return dataset


def _draft(adam: User, text: str = "Answer in one short sentence.") -> PromptVersion:
    draft = services.prompt_draft_create(user=adam)
    return services.prompt_draft_save(version=draft, text=text, note="shorter")


def _run(experiment: Experiment | None) -> None:
    assert experiment is not None
    assert runner.experiment_run(experiment_id=experiment.pk) is not None


def _turn(user: User, text: str = "How do I reset my password?") -> Turn:
    conversation = chat.conversation_create(owner=user)
    return chat.turn_create(conversation=conversation, user_text=text)


def test_it_starts_with_version_one_published(version_one: PromptVersion) -> None:
    [first] = PromptVersion.objects.filter(kind="system")
    assert first == version_one
    assert (first.kind, first.number, first.status) == ("system", 1, "published")
    assert first.text == DEFAULT_SYSTEM_PROMPT and first.published_at is not None
    assert services.prompt_versions_ensure() == first, "idempotent"


def test_it_builds_the_turn_from_the_published_text_in_three_queries(
    alice: User, adam: User, fake_endpoint: Callable[..., ModelEndpoint], django_assert_num_queries
) -> None:
    """The published prompt comes along with the history: still prompt, settings, route."""
    from chatbot.agent.turn import _prepare
    from chatbot.telemetry.tracing import Tracer

    fake_endpoint()
    draft = _draft(adam, "You are Tessa, the help desk's assistant.")
    services.prompt_publish(version=draft, user=adam, ungated=True)
    turn = _turn(alice)
    with django_assert_num_queries(3):
        prepared = _prepare(turn.pk, None, None, Tracer())
    assert prepared.prompt.messages[0].content == "You are Tessa, the help desk's assistant."
    assert prepared.prompt.version_id == draft.pk


@pytest.mark.django_db(transaction=True)
async def test_it_records_the_published_version_on_every_turn(
    alice: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    from chatbot.agent.turn import turn_run

    await sync_to_async(fake_endpoint)(["Use the reset link."])
    published = await sync_to_async(services.prompt_versions_ensure)()
    turn = await sync_to_async(_turn)(alice)

    async def emit(text: str) -> None:
        pass

    outcome = await turn_run(turn_id=turn.pk, emit=emit)
    assert outcome.status == "done"
    saved = await Turn.objects.aget(pk=turn.pk)
    assert saved.prompt_version_id == published.pk


def test_it_refuses_a_draft_that_loses_on_the_gate_dataset(
    adam: User, fake_endpoint: Callable[..., ModelEndpoint], version_one: PromptVersion
) -> None:
    fake_endpoint([GOLD])
    dataset, draft = _dataset(), _draft(adam)
    started = services.prompt_publish(version=draft, user=adam, dataset=dataset)
    assert started.state == "running"
    draft.refresh_from_db()
    assert draft.status == "draft" and draft.gate_dataset == dataset
    assert draft.gate_experiment and draft.gate_experiment.prompt_template == draft.text
    assert draft.gate_baseline and draft.gate_baseline.prompt_version_id == version_one.pk
    _run(draft.gate_baseline)  # the published prompt: the fake model answers with the gold
    fake_endpoint(["I have no idea."])
    _run(draft.gate_experiment)

    with pytest.raises(services.PromptError, match="it loses, so it stays a draft"):
        services.prompt_publish(version=draft, user=adam, dataset=dataset)
    draft.refresh_from_db()
    assert draft.status == "draft"
    assert PromptVersion.objects.get(kind="system", status="published").number == 1


def test_it_publishes_a_draft_that_ties_and_retires_the_previous(
    adam: User, fake_endpoint: Callable[..., ModelEndpoint], client_as: ClientAs
) -> None:
    fake_endpoint([GOLD])
    dataset, draft = _dataset(), _draft(adam)
    publish = reverse("console:prompt_publish", args=[draft.pk])
    client_as(adam).post(publish, {"dataset": dataset.pk})
    draft.refresh_from_db()
    _run(draft.gate_baseline)
    _run(draft.gate_experiment)
    assert services.prompt_gate(PromptVersion.objects.get(pk=draft.pk)).state == "passed"

    response = client_as(adam).post(publish, {"dataset": dataset.pk}, follow=True)

    assert "does not lose" in response.content.decode()
    draft.refresh_from_db()
    assert draft.status == "published" and not draft.ungated and draft.published_at
    assert PromptVersion.objects.get(kind="system", number=1).status == "retired"


def test_it_reuses_a_run_of_the_published_prompt_for_the_gate(
    adam: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    fake_endpoint([GOLD])
    dataset, first, second = _dataset(), _draft(adam), _draft(adam, "Be brief.")
    services.prompt_publish(version=first, user=adam, dataset=dataset)
    services.prompt_publish(version=second, user=adam, dataset=dataset)
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.gate_baseline == second.gate_baseline
    assert first.gate_experiment != second.gate_experiment


def test_it_publishes_without_a_gate_only_when_ticked(
    adam: User, fake_endpoint: Callable[..., ModelEndpoint], client_as: ClientAs
) -> None:
    fake_endpoint()
    draft = _draft(adam)
    publish = reverse("console:prompt_publish", args=[draft.pk])

    refused = client_as(adam).post(publish, {}, follow=True)
    assert "publish without a gate" in refused.content.decode()
    draft.refresh_from_db()
    assert draft.status == "draft"

    client_as(adam).post(publish, {"ungated": "on"})
    draft.refresh_from_db()
    assert draft.status == "published" and draft.ungated


def test_it_reruns_the_regression_datasets_when_a_prompt_is_published(
    adam: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    fake_endpoint()
    regression, _ = _dataset("Reviewed failures", regression=True), _dataset("Other")
    draft = _draft(adam)
    services.prompt_publish(version=draft, user=adam, ungated=True)

    [rerun] = Experiment.objects.exclude(trigger="")
    assert rerun.dataset == regression and rerun.prompt_version == draft
    assert rerun.prompt_template == draft.text
    assert rerun.trigger == f"system prompt v{draft.number} published"
    assert regression_reruns_queue(reason="again", user=adam) == [rerun], "idempotent"


def test_it_reruns_the_regression_datasets_when_the_default_model_changes(
    adam: User,
    fake_endpoint: Callable[..., ModelEndpoint],
    client_as: ClientAs,
    version_one: PromptVersion,
) -> None:
    fake_endpoint()
    other = fake_endpoint(name="other", default=False)
    _dataset("Reviewed failures", regression=True)

    client_as(adam).post(reverse("console:model_default", args=[other.pk]))

    [rerun] = Experiment.objects.exclude(trigger="")
    assert rerun.endpoint == other and rerun.prompt_version_id == version_one.pk
    assert "“other” became the default model" in rerun.trigger
    page = client_as(adam).get(reverse("console:models")).content.decode()
    assert reverse("review:experiment", args=[rerun.pk]) in page


def test_it_previews_the_draft_with_sample_passages_escaped(
    adam: User, fake_endpoint: Callable[..., ModelEndpoint], client_as: ClientAs
) -> None:
    fake_endpoint()
    draft = _draft(adam, "Be kind. <script>alert(1)</script>")
    response = client_as(adam).get(
        reverse("console:prompt", args=[draft.pk]),
        {
            "question": "Where is <b>tray 2</b>?",
            "passages": "Tray 2 <img src=x> is low.\n\nSecond.",
        },
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "Be kind. &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page and "<img src=x>" not in page
    assert "[1] Sample passage 1\nTray 2 &lt;img src=x&gt; is low." in page
    assert "[2] Sample passage 2" in page and "Where is &lt;b&gt;tray 2&lt;/b&gt;?" in page
    assert "Answer only from the numbered sources" in page, "the grounding instructions too"


def test_it_changes_the_answer_cache_key_with_the_published_version(
    alice: User, adam: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    fake_endpoint()
    endpoint, config = route_choose().endpoint, assistant_settings()
    before = prompt_for_turn(_turn(alice).pk)
    services.prompt_publish(version=_draft(adam), user=adam, ungated=True)
    after = prompt_for_turn(_turn(alice).pk)
    assert before.version_id != after.version_id

    def scope(version_id: int | None) -> str:
        return scope_of(
            kb_versions={}, endpoint=endpoint, config=config, prompt_version_id=version_id
        ).hash

    assert scope(before.version_id) != scope(after.version_id)


@pytest.mark.parametrize("who", ["nora", "alice", "rita"])
def test_it_refuses_everyone_but_admins(
    client_as: ClientAs, cast: dict[str, User], who: str, fake_endpoint: Any
) -> None:
    fake_endpoint()
    dataset = _dataset()
    version = PromptVersion.objects.get(kind="system", number=1)
    client = client_as(cast[who])
    assert client.get(reverse("console:prompts")).status_code == 403
    assert client.post(reverse("console:prompt_new"), {"kind": "answer"}).status_code == 403
    assert client.get(reverse("console:prompt", args=[version.pk])).status_code == 403
    assert (
        client.post(reverse("console:prompt", args=[version.pk]), {"text": "x"}).status_code == 403
    )
    publish = reverse("console:prompt_publish", args=[version.pk])
    assert client.post(publish, {"ungated": "on"}).status_code == 403
    regression = reverse("review:dataset_regression", args=[dataset.pk])
    assert client.post(regression).status_code == 403
    assert PromptVersion.objects.count() == 2 and not Dataset.objects.get().regression


def test_it_lets_an_admin_draft_edit_and_mark_a_regression_dataset(
    adam: User, client_as: ClientAs, fake_endpoint: Any
) -> None:
    fake_endpoint()
    client = client_as(adam)
    listing = client.get(reverse("console:prompts"))
    assert listing.status_code == 200 and "v1" in listing.content.decode()
    client.post(reverse("console:prompt_new"), {"kind": "system"})
    draft = PromptVersion.objects.get(status="draft")
    assert draft.number == 2 and draft.text == DEFAULT_SYSTEM_PROMPT
    client.post(reverse("console:prompt", args=[draft.pk]), {"text": "New words.", "note": "n"})
    draft.refresh_from_db()
    assert draft.text == "New words."
    dataset = _dataset()
    client.post(reverse("review:dataset_regression", args=[dataset.pk]))
    dataset.refresh_from_db()
    assert dataset.regression


# --- the answer instructions, the second kind of prompt ------------------------------------------

NEW_INSTRUCTIONS = "Use only the numbered sources below; cite them as [n]. Reply in one line."


def _answer_draft(adam: User, text: str = NEW_INSTRUCTIONS) -> PromptVersion:
    draft = services.prompt_draft_create(user=adam, kind=PromptVersion.Kind.ANSWER)
    return services.prompt_draft_save(version=draft, text=text, note="one line")


def test_the_answer_instructions_start_as_version_one_of_their_own() -> None:
    [first] = PromptVersion.objects.filter(kind="answer")
    assert (first.number, first.status) == (1, "published")
    assert first.text == GROUNDING_INSTRUCTIONS
    assert services.prompt_versions_ensure(PromptVersion.Kind.ANSWER) == first, "idempotent"


def test_a_grounded_turn_is_sent_and_records_the_published_answer_instructions(
    alice: User, adam: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    from chatbot.agent.turn import _prepare
    from chatbot.telemetry.tracing import Tracer
    from tests.knowledge.test_search import make_knowledge_base

    make_knowledge_base()
    AssistantSettings.objects.update_or_create(
        pk=1, defaults={"grounding": "required", "min_similarity": 0.3}
    )
    fake_endpoint()
    draft = _answer_draft(adam)
    services.prompt_publish(version=draft, user=adam, ungated=True)
    prepared = _prepare(
        _turn(alice, "How do I reset a forgotten password?").pk, None, None, Tracer()
    )

    assert prepared.grounding.hits, "the passages went to the model"
    system = [m.content for m in prepared.prompt.messages if m.role == "system"]
    assert system == [DEFAULT_SYSTEM_PROMPT, NEW_INSTRUCTIONS]
    assert prepared.prompt.instructions_version_id == draft.pk


@pytest.mark.django_db(transaction=True)
async def test_a_turn_records_the_answer_instructions_only_when_passages_were_sent(
    alice: User, adam: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    from chatbot.agent.turn import turn_run
    from tests.knowledge.test_search import make_knowledge_base

    await sync_to_async(make_knowledge_base)()
    await sync_to_async(fake_endpoint)(["Use the reset link [1]."])
    answer = await sync_to_async(services.prompt_versions_ensure)(PromptVersion.Kind.ANSWER)

    async def emit(text: str) -> None:
        pass

    await AssistantSettings.objects.aupdate_or_create(
        pk=1, defaults={"grounding": "required", "min_similarity": 0.3}
    )
    grounded = await sync_to_async(_turn)(alice, "How do I reset a forgotten password?")
    await turn_run(turn_id=grounded.pk, emit=emit)
    await AssistantSettings.objects.aupdate_or_create(pk=1, defaults={"grounding": "off"})
    plain = await sync_to_async(_turn)(alice, "Say hello.")
    await turn_run(turn_id=plain.pk, emit=emit)

    assert (await Turn.objects.aget(pk=grounded.pk)).answer_version_id == answer.pk
    assert (await Turn.objects.aget(pk=plain.pk)).answer_version_id is None


def test_the_gate_runs_answer_instructions_beside_the_published_system_prompt(
    adam: User, fake_endpoint: Callable[..., ModelEndpoint], version_one: PromptVersion
) -> None:
    fake_endpoint([GOLD])
    dataset, draft = _dataset(), _answer_draft(adam)
    published = services.prompt_versions_ensure(PromptVersion.Kind.ANSWER)
    started = services.prompt_publish(version=draft, user=adam, dataset=dataset)
    assert started.state == "running"
    draft.refresh_from_db()
    tried, baseline = draft.gate_experiment, draft.gate_baseline
    assert tried is not None and baseline is not None
    assert (tried.answer_version, tried.answer_template) == (draft, NEW_INSTRUCTIONS)
    assert (tried.prompt_version, tried.prompt_template) == (version_one, version_one.text)
    assert (baseline.answer_version, baseline.prompt_version) == (published, version_one)
    _run(baseline)
    _run(tried)

    gate = services.prompt_publish(version=draft, user=adam, dataset=dataset)

    assert gate.state == "published"
    assert PromptVersion.objects.get(pk=published.pk).status == "retired"
    assert PromptVersion.objects.get(kind="system", status="published") == version_one


def test_publishing_answer_instructions_reruns_the_regression_datasets(
    adam: User, fake_endpoint: Callable[..., ModelEndpoint], version_one: PromptVersion
) -> None:
    fake_endpoint()
    _dataset("Reviewed failures", regression=True)
    draft = _answer_draft(adam)
    services.prompt_publish(version=draft, user=adam, ungated=True)

    [rerun] = Experiment.objects.exclude(trigger="")
    assert rerun.trigger == f"answer instructions v{draft.number} published"
    assert (rerun.answer_version, rerun.answer_template) == (draft, NEW_INSTRUCTIONS)
    assert rerun.prompt_version == version_one
    assert regression_reruns_queue(reason="again", user=adam) == [rerun], "idempotent"


def test_the_answer_cache_key_changes_with_the_published_answer_instructions(
    alice: User, adam: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    fake_endpoint()
    endpoint, config = route_choose().endpoint, assistant_settings()
    before = prompt_for_turn(_turn(alice).pk)
    services.prompt_publish(version=_answer_draft(adam), user=adam, ungated=True)
    after = prompt_for_turn(_turn(alice).pk)
    assert before.instructions_version_id != after.instructions_version_id
    assert before.version_id == after.version_id

    def scope(prompt: Any) -> str:
        return scope_of(
            kb_versions={},
            endpoint=endpoint,
            config=config,
            prompt_version_id=prompt.version_id,
            instructions_version_id=prompt.instructions_version_id,
        ).hash

    assert scope(before) != scope(after)


def test_the_prompts_page_lists_both_kinds_and_drafts_answer_instructions(
    adam: User, fake_endpoint: Callable[..., ModelEndpoint], client_as: ClientAs
) -> None:
    fake_endpoint()
    client = client_as(adam)
    listing = client.get(reverse("console:prompts")).content.decode()
    assert "System prompt" in listing and "Answer instructions" in listing

    client.post(reverse("console:prompt_new"), {"kind": "answer"})
    draft = PromptVersion.objects.get(status="draft")
    assert draft.kind == "answer" and draft.text == GROUNDING_INSTRUCTIONS
    client.post(
        reverse("console:prompt", args=[draft.pk]), {"text": "<b>Cite</b> [n].", "note": ""}
    )
    page = client.get(reverse("console:prompt", args=[draft.pk])).content.decode()
    assert "Answer instructions v2" in page
    # The preview frames the sample passages with the draft, after the published system prompt.
    assert "&lt;b&gt;Cite&lt;/b&gt; [n]." in page and "<b>Cite</b>" not in page
    assert "You are the company&#x27;s internal support assistant" in page
    assert "Answer only from the numbered sources" not in page, "the draft replaced them"
    refused = client.post(reverse("console:prompt_new"), {"kind": "poem"}, follow=True)
    assert "Choose which kind of prompt" in refused.content.decode()
