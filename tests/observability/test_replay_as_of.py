"""Replays against the knowledge base as it was when the original turn ran: real ingestion,
Postgres + pgvector and MiniLM; the model is the fake at the edge."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from chatbot.accounts import roles
from chatbot.agent.turn import turn_run
from chatbot.chat import services as chat_services
from chatbot.knowledge import services as knowledge
from chatbot.knowledge.ingest import source_ingest
from chatbot.models import AssistantSettings, Citation, Collection, ModelEndpoint, Replay, Turn
from observability import services as observability
from tests.knowledge.ingest_support import CountingEmbeddings

pytestmark = pytest.mark.django_db

OLD = "Printers on floor 3 need the blue driver."
NEW = "Printers on floor 3 now need the green driver."
QUESTION = "Which driver do the printers on floor 3 need?"


async def _quiet(_: str) -> None:
    pass


def _setup(folder: Path, fake_endpoint: Callable[..., ModelEndpoint]) -> Collection:
    (folder / "printers.txt").write_text(OLD)
    (folder / "vpn.txt").write_text("Restart the VPN client when the tunnel drops.")
    collection = knowledge.collection_create(
        name="Office IT", groups=Group.objects.filter(name=roles.AGENT)
    )
    source = knowledge.source_create(
        collection=collection, kind="path", location=str(folder), queue=False
    )
    source_ingest(source_id=source.pk, embedder=CountingEmbeddings())
    AssistantSettings.objects.update_or_create(
        pk=1, defaults={"grounding": "required", "min_similarity": 0.2, "min_coverage": 0.0}
    )
    fake_endpoint(["Use the driver in [1]."])
    return collection


def _ask(user: User) -> Turn:
    conversation = chat_services.conversation_create(owner=user)
    turn = chat_services.turn_create(conversation=conversation, user_text=QUESTION)
    async_to_sync(turn_run)(turn_id=turn.pk, emit=_quiet)
    return Turn.objects.get(pk=turn.pk)


def _cited_text(turn: Turn) -> str:
    return Citation.objects.select_related("chunk").get(turn=turn, number=1).chunk.text


def _change(folder: Path, collection: Collection) -> None:
    (folder / "printers.txt").write_text(NEW)
    source = collection.sources.get()
    source_ingest(source_id=source.pk, embedder=CountingEmbeddings())


def test_a_replay_as_of_the_original_reads_the_old_passage(
    tmp_path: Path, alice: User, adam: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    collection = _setup(tmp_path, fake_endpoint)
    original = _ask(alice)
    assert _cited_text(original) == OLD
    read = dict(original.kb_versions)
    assert read == {str(collection.pk): 2}
    _change(tmp_path, collection)

    then = observability.replay_create(created_by=adam, turn=original, kb_as_of_original=True)
    now = observability.replay_create(created_by=adam, turn=original)
    for job in (then, now):
        observability.replay_run(replay_id=job.pk)

    replayed = {
        job.pk: Turn.objects.get(conversation=Replay.objects.get(pk=job.pk).conversation)
        for job in (then, now)
    }
    as_of, current = replayed[then.pk], replayed[now.pk]
    assert (as_of.status, current.status) == (Turn.Status.DONE, Turn.Status.DONE)
    assert _cited_text(as_of) == OLD, "the model was given the passage as it was"
    assert as_of.kb_versions == read
    assert _cited_text(current) == NEW
    assert current.kb_versions == {str(collection.pk): 3}
    search = as_of.spans.get(kind="retrieval")
    assert search.attributes["as_of"] is True


def test_a_replay_as_of_the_original_is_refused_without_versions_or_past_the_window(
    tmp_path: Path,
    alice: User,
    adam: User,
    fake_endpoint: Callable[..., ModelEndpoint],
    client_as: Callable[[User], Client],
) -> None:
    fake_endpoint(["An answer."])
    ungrounded = _ask(alice)  # grounding is off in tests unless asked
    assert ungrounded.kb_versions == {}
    client = client_as(adam)

    response = client.post(
        f"/dashboard/turns/{ungrounded.pk}/replay/", {"scope": "turn", "kb": "original"}
    )

    assert response.status_code == 400
    assert "read no knowledge base" in response.content.decode()
    collection = _setup(tmp_path, fake_endpoint)
    old = _ask(alice)
    Turn.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=91))
    response = client.post(
        f"/dashboard/turns/{old.pk}/replay/", {"scope": "turn", "kb": "original"}
    )
    assert response.status_code == 400
    assert "before the last 90 days" in response.content.decode()
    assert not Replay.objects.exists()

    recent = _ask(alice)
    _change(tmp_path, collection)
    response = client.post(
        f"/dashboard/turns/{recent.pk}/replay/", {"scope": "turn", "kb": "original"}
    )
    assert response.status_code == 302
    job = Replay.objects.get()
    assert job.kb_as_of_original
    page = client.get(f"/dashboard/replays/{job.pk}/").content.decode()
    assert "as it was when each turn ran" in page
    assert (
        "As it was when the turn ran"
        in client.get(f"/dashboard/turns/{recent.pk}/").content.decode()
    )


@pytest.mark.parametrize("who", ["nora", "rita"])
def test_only_admins_start_a_replay_as_of_the_original(
    tmp_path: Path,
    cast: dict[str, User],
    fake_endpoint: Callable[..., ModelEndpoint],
    client_as: Callable[[User], Client],
    who: str,
) -> None:
    _setup(tmp_path, fake_endpoint)
    original = _ask(cast["alice"])

    response = client_as(cast[who]).post(
        f"/dashboard/turns/{original.pk}/replay/", {"scope": "turn", "kb": "original"}
    )

    assert response.status_code == 403
    assert not Replay.objects.exists()


def test_a_conversation_replay_reads_each_turn_as_of_its_own_versions(
    tmp_path: Path, alice: User, adam: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    collection = _setup(tmp_path, fake_endpoint)
    conversation = chat_services.conversation_create(owner=alice)
    turns = []
    for change in (False, True):
        if change:
            _change(tmp_path, collection)
        turn = chat_services.turn_create(conversation=conversation, user_text=QUESTION)
        async_to_sync(turn_run)(turn_id=turn.pk, emit=_quiet)
        turns.append(Turn.objects.get(pk=turn.pk))
    (tmp_path / "printers.txt").write_text("Printers on floor 3 use the red driver.")
    _change(tmp_path, collection)  # today's text is neither

    job = observability.replay_create(
        created_by=adam, turn=turns[1], scope="conversation", kb_as_of_original=True
    )
    observability.replay_run(replay_id=job.pk)

    job.refresh_from_db()
    assert job.status == Replay.Status.DONE and job.completed == 2
    for original in turns:
        new = Turn.objects.get(replay_of=original)
        assert new.kb_versions == original.kb_versions
        assert _cited_text(new) == _cited_text(original)
    assert [_cited_text(t) for t in turns] == [OLD, NEW]


def test_a_replay_whose_turn_left_the_kept_window_before_it_ran_fails_in_words(
    tmp_path: Path, alice: User, adam: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    _setup(tmp_path, fake_endpoint)
    original = _ask(alice)
    job = observability.replay_create(created_by=adam, turn=original, kb_as_of_original=True)
    Turn.objects.filter(pk=original.pk).update(created_at=timezone.now() - timedelta(days=91))

    observability.replay_run(replay_id=job.pk)

    job.refresh_from_db()
    assert job.status == Replay.Status.FAILED
    assert f"Turn {original.pk} ran on" in job.error and "kept" in job.error
    assert not Turn.objects.filter(replay_of=original).exists()
