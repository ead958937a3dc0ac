"""Experiments against the knowledge base as it was on a chosen turn: real ingestion, Postgres +
pgvector and MiniLM, the real pipeline; the model is the fake at the edge."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from chatbot.accounts import roles
from chatbot.chat import services as chat_services
from chatbot.knowledge import services as knowledge
from chatbot.knowledge.ingest import source_ingest
from chatbot.models import Chunk, Collection, Dataset, Experiment, ModelEndpoint, Turn
from evaluation.datasets import runner, services
from evaluation.offline.data import ItemData
from tests.knowledge.ingest_support import CountingEmbeddings

pytestmark = pytest.mark.django_db

OLD = "Printers on floor 3 need the blue driver."
NEW = "Printers on floor 3 now need the green driver."
QUESTION = "Which driver do the printers on floor 3 need?"
GROUNDED = {"grounding": "required", "k": 3, "min_similarity": 0.2, "min_coverage": 0.0}


def _collection(folder: Path) -> Collection:
    (folder / "printers.txt").write_text(OLD)
    (folder / "vpn.txt").write_text("Restart the VPN client when the tunnel drops.")
    collection = knowledge.collection_create(
        name="Office IT", groups=Group.objects.filter(name__in=[roles.AGENT, roles.REVIEWER])
    )
    source = knowledge.source_create(
        collection=collection, kind="path", location=str(folder), queue=False
    )
    source_ingest(source_id=source.pk, embedder=CountingEmbeddings())
    collection.refresh_from_db()
    return collection


def _turn(user: User, kb_versions: dict[str, int]) -> Turn:
    conversation = chat_services.conversation_create(owner=user)
    turn = chat_services.turn_create(conversation=conversation, user_text=QUESTION)
    Turn.objects.filter(pk=turn.pk).update(status=Turn.Status.DONE, kb_versions=kb_versions)
    return Turn.objects.get(pk=turn.pk)


def _change(folder: Path, collection: Collection) -> None:
    (folder / "printers.txt").write_text(NEW)
    source_ingest(source_id=collection.sources.get().pk, embedder=CountingEmbeddings())


def _dataset() -> Dataset:
    return services.dataset_create(name="printers", items=[ItemData(question=QUESTION)])


def _context_texts(experiment: Experiment) -> list[str]:
    result = experiment.results.get()
    return list(
        Chunk.objects.filter(pk__in=[c["chunk"] for c in result.context]).values_list(
            "text", flat=True
        )
    )


def test_an_experiment_as_of_a_turn_reads_the_knowledge_base_as_it_was(
    tmp_path: Path, alice: User, rita: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    collection = _collection(tmp_path)
    then = {str(collection.pk): collection.version}
    turn = _turn(alice, then)
    _change(tmp_path, collection)
    endpoint = fake_endpoint(["The driver in [1]."])
    dataset = _dataset()

    as_of = services.experiment_create(
        dataset=dataset,
        endpoint=endpoint,
        retrieval=GROUNDED,
        user=rita,
        queue=False,
        kb_as_of_turn=turn,
    )
    now = services.experiment_create(
        dataset=dataset, endpoint=endpoint, retrieval=GROUNDED, user=rita, queue=False
    )
    for experiment in (as_of, now):
        runner.experiment_run(experiment_id=experiment.pk)

    as_of.refresh_from_db()
    now.refresh_from_db()
    assert as_of.kb_as_of_turn == turn and as_of.kb_versions == then
    assert OLD in _context_texts(as_of) and NEW not in _context_texts(as_of)
    assert as_of.summary["kb_changed_during_run"] is False
    assert now.kb_versions == {str(collection.pk): collection.version + 1}
    assert NEW in _context_texts(now) and OLD not in _context_texts(now)


def test_an_experiment_as_of_a_turn_is_refused_without_versions(
    tmp_path: Path, alice: User, rita: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    collection = _collection(tmp_path)
    endpoint = fake_endpoint(["An answer."])
    dataset = _dataset()

    with pytest.raises(services.InvalidExperiment, match="read no knowledge base"):
        services.experiment_create(
            dataset=dataset,
            endpoint=endpoint,
            retrieval=GROUNDED,
            user=rita,
            kb_as_of_turn=_turn(alice, {}),
        )
    with pytest.raises(services.InvalidExperiment, match="without grounding"):
        services.experiment_create(
            dataset=dataset,
            endpoint=endpoint,
            retrieval={"grounding": "off"},
            user=rita,
            kb_as_of_turn=_turn(alice, {str(collection.pk): 1}),
        )
    assert not Experiment.objects.exists()


def test_the_experiment_form_takes_a_turn_number_and_the_page_shows_it(
    tmp_path: Path,
    alice: User,
    rita: User,
    fake_endpoint: Callable[..., ModelEndpoint],
    client_as: Callable[[User], Client],
) -> None:
    collection = _collection(tmp_path)
    turn = _turn(alice, {str(collection.pk): 1})
    endpoint = fake_endpoint(["An answer [1]."])
    dataset = _dataset()
    form = {
        "dataset": dataset.pk,
        "endpoint": endpoint.pk,
        "grounding": "required",
        "k": 3,
        "min_similarity": 0.2,
        "min_coverage": 0.0,
        "min_answerable": 0.0,
    }
    client = client_as(rita)

    missing = client.post(reverse("review:experiment_new"), {**form, "kb_as_of_turn": 999999})
    assert missing.status_code == 400 and "There is no turn #999999." in missing.content.decode()
    response = client.post(reverse("review:experiment_new"), {**form, "kb_as_of_turn": turn.pk})

    assert response.status_code == 302, response.content.decode()
    experiment = Experiment.objects.get()
    assert experiment.kb_as_of_turn == turn and experiment.kb_versions == {str(collection.pk): 1}
    page = client.get(reverse("review:experiment", args=[experiment.pk])).content.decode()
    assert f"turn #{turn.pk}</a>: collection {collection.pk}: v1" in page


@pytest.mark.parametrize("who", ["nora", "alice"])
def test_only_reviewers_start_an_experiment_as_of_a_turn(
    tmp_path: Path,
    cast: dict[str, User],
    fake_endpoint: Callable[..., ModelEndpoint],
    client_as: Callable[[User], Client],
    who: str,
) -> None:
    collection = _collection(tmp_path)
    turn = _turn(cast["alice"], {str(collection.pk): 1})
    endpoint = fake_endpoint(["An answer."])

    response = client_as(cast[who]).post(
        reverse("review:experiment_new"),
        {"dataset": _dataset().pk, "endpoint": endpoint.pk, "grounding": "required",
         "k": 3, "min_similarity": 0.2, "kb_as_of_turn": turn.pk},
    )  # fmt: skip

    assert response.status_code == 403
    assert not Experiment.objects.exists()
