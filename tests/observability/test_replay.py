"""Replays with the fake model: a past turn (or a whole conversation) asked again against
another endpoint and system prompt, recorded as replays, shown side by side, kept out of the
person's conversations and out of production figures; and the Celery job with its progress."""

from __future__ import annotations

import re
import time

import pytest
from asgiref.sync import async_to_sync
from celery.contrib.testing.worker import TestWorkController

from chatbot.agent.turn import turn_run
from chatbot.chat import selectors, services
from chatbot.models import Conversation, Replay, Turn
from chatbot.telemetry import metrics
from evaluation import services as evaluation
from observability import replay, rollups
from observability import services as observability
from observability.rollups import Filters


async def _quiet(_: str) -> None:
    pass


def ask(conversation: Conversation, question: str) -> Turn:
    turn = services.turn_create(conversation=conversation, user_text=question)
    async_to_sync(turn_run)(turn_id=turn.pk, emit=_quiet)
    return Turn.objects.get(pk=turn.pk)


def _count(model: str) -> float:
    return metrics.TURNS.labels(model, "done")._value.get()


@pytest.mark.django_db
def test_it_replays_a_turn_against_another_model_and_prompt(
    alice, adam, fake_endpoint, client_as
) -> None:
    fake_endpoint(["The link expires after 30 minutes."], name="fake-old")
    new_model = fake_endpoint(["Thirty minutes."], name="fake-new", default=False)
    original = ask(services.conversation_create(owner=alice), "How long is the reset link valid?")
    before = _count("fake-new")

    job = observability.replay_create(
        created_by=adam, turn=original, endpoint=new_model, system_prompt="Answer in two words."
    )
    assert job.status == Replay.Status.PENDING and job.total == 1
    observability.replay_run(replay_id=job.pk)

    job.refresh_from_db()
    assert job.status == Replay.Status.DONE and job.completed == 1
    new = Turn.objects.get(replay_of=original)
    assert new.is_replay and new.status == Turn.Status.DONE
    assert new.answer == "Thirty minutes." and new.endpoint == new_model
    assert new.user_text == original.user_text
    assert new.conversation.is_replay and new.conversation.owner == alice
    assert new.spans.filter(kind="llm", name="fake-new").exists()
    prompt = replay.replay_prompt(job, source=original, new=new)
    assert prompt.messages[0].content == "Answer in two words."
    assert prompt.question == original.user_text
    # Kept out of the person's conversations and of production figures.
    assert list(selectors.conversations_for(alice)) == [original.conversation]
    with pytest.raises(Conversation.DoesNotExist):
        selectors.conversation_get_for(alice, new.conversation_id)
    assert _count("fake-new") == before, "replays are not counted in /metrics"
    rollups.hours_recompute(hours=[original.created_at, new.created_at])
    day = original.created_at.date()
    totals = rollups.rollup_totals(Filters(start=day, end=day), by="total")[None]
    assert totals["turns"] == 1

    # Judges score both; the page shows old and new side by side.
    judges = {j.name: j for j in evaluation.judges_ensure()}
    for turn in (original, new):
        evaluation.judge_run(turn_id=turn.pk, judge_id=judges["format"].pk)
    response = client_as(adam).get(f"/dashboard/replays/{job.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "The link expires after 30 minutes." in html and "Thirty minutes." in html
    assert html.index("Original") < html.index("The link expires") < html.index("Thirty minutes.")
    assert html.count("format:") == 2, "each side shows its judge scores"
    assert 'hx-trigger="every 1s"' not in html, "a finished, judged replay stops polling"
    assert "fake-new" in html


@pytest.mark.django_db
def test_it_replays_a_whole_conversation_carrying_the_new_answers_forward(
    alice, adam, fake_endpoint
) -> None:
    fake_endpoint(["old answer"], name="fake-old")
    conversation = services.conversation_create(owner=alice)
    first = ask(conversation, "First question?")
    second = ask(conversation, "Second question?")
    new_model = fake_endpoint(["new answer"], name="fake-new", default=False)

    job = observability.replay_create(
        created_by=adam, turn=second, endpoint=new_model, scope="conversation"
    )
    assert job.total == 2
    observability.replay_run(replay_id=job.pk)
    observability.replay_run(replay_id=job.pk)  # safe to run twice

    job.refresh_from_db()
    assert job.status == Replay.Status.DONE and job.completed == 2
    replays = list(Turn.objects.filter(is_replay=True).order_by("created_at"))
    assert [t.replay_of_id for t in replays] == [first.pk, second.pk]
    prompt = replay.replay_prompt(job, source=second, new=replays[1])
    assert [m.content for m in prompt.messages[1:]] == [
        "First question?", "new answer", "Second question?",
    ]  # fmt: skip
    pairs = observability.replay_pairs(job)
    assert [(p.old.pk, p.new.pk if p.new else None) for p in pairs] == [
        (first.pk, replays[0].pk),
        (second.pk, replays[1].pk),
    ]


@pytest.mark.django_db
def test_it_refuses_bad_replays_with_a_clear_message(alice, adam, fake_endpoint, client_as) -> None:
    model = fake_endpoint(["answer"], name="fake-old")
    original = ask(services.conversation_create(owner=alice), "A question?")
    job = observability.replay_create(created_by=adam, turn=original)
    observability.replay_run(replay_id=job.pk)
    copy = Turn.objects.get(replay_of=original)
    client = client_as(adam)

    page = client.get(f"/dashboard/turns/{copy.pk}/").content.decode()
    assert 'action="/dashboard/turns/' not in page, "a replay's page offers no replay"
    response = client.post(f"/dashboard/turns/{copy.pk}/replay/", {"scope": "turn"})
    assert response.status_code == 400
    assert "This turn is itself a replay. Replay its original instead." in response.content.decode()
    assert Replay.objects.count() == 1

    model.enabled = False
    model.save()
    response = client.post(
        f"/dashboard/turns/{original.pk}/replay/", {"scope": "turn", "endpoint": model.pk}
    )
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    response = client.post(f"/dashboard/turns/{original.pk}/replay/", {"scope": "everything"})
    assert response.status_code == 400
    assert Replay.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["rita", "alice", "nora"])
def test_it_lets_only_admins_start_a_replay(cast, fake_endpoint, client_as, who) -> None:
    fake_endpoint(["answer"])
    original = ask(services.conversation_create(owner=cast["alice"]), "A question?")

    response = client_as(cast[who]).post(f"/dashboard/turns/{original.pk}/replay/", {})

    assert response.status_code == 403
    assert not Replay.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_it_runs_a_replay_in_a_real_worker_with_progress(
    alice, adam, fake_endpoint, client_as, worker: TestWorkController
) -> None:
    fake_endpoint(["old"], name="fake-old")
    conversation = services.conversation_create(owner=alice)
    for question in ("One?", "Two?", "Three?"):
        last = ask(conversation, question)
    new_model = fake_endpoint(["new"], name="fake-slow", default=False, sleep=0.05)
    client = client_as(adam)

    response = client.post(
        f"/dashboard/turns/{last.pk}/replay/",
        {"endpoint": new_model.pk, "scope": "conversation", "system_prompt": ""},
    )

    assert response.status_code == 302
    job = Replay.objects.get()
    assert response["Location"] == f"/dashboard/replays/{job.pk}/"
    first = client.get(response["Location"]).content.decode()
    assert "of 3 turns replayed" in first
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.is_finished:
            break
        time.sleep(0.2)
    assert job.status == Replay.Status.DONE, job.error
    partial = client.get(f"/dashboard/replays/{job.pk}/", headers={"HX-Request": "true"})
    body = partial.content.decode()
    assert "<html" not in body, "htmx polls get the partial"
    assert re.search(r"3 of 3 turns replayed", body)
    assert body.count(">new<") + body.count("<p>new</p>") >= 3


@pytest.mark.django_db
def test_it_hides_source_titles_of_collections_not_shared_with_the_viewer(
    alice, rita, adam, client_as
) -> None:
    from chatbot.models import Document
    from tests.evaluation.judging import admins_only_turn

    original = admins_only_turn(alice)
    Document.objects.filter(chunks__citations__turn=original).update(title="Bluebird memo")
    job = Replay.objects.create(created_by=adam, source_turn=original, total=1)

    as_rita = client_as(rita).get(f"/dashboard/replays/{job.pk}/")
    as_adam = client_as(adam).get(f"/dashboard/replays/{job.pk}/")

    assert as_rita.status_code == 200
    assert "Bluebird memo" not in as_rita.content.decode()
    assert "Passage from a collection not shared with you." in as_rita.content.decode()
    assert "Bluebird memo" in as_adam.content.decode()
