"""Past answers keep their sources: re-ingesting a changed document retires the chunks a turn cites
instead of deleting them, and search only ever sees the current text. Real Postgres + pgvector +
MiniLM; the model is langchain-core's fake at the edge."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse
from pytest_django.fixtures import Settings

from chatbot.accounts import roles
from chatbot.agent.turn import turn_run
from chatbot.chat import services as chat_services
from chatbot.knowledge import selectors, services
from chatbot.knowledge.ingest import source_ingest
from chatbot.models import (
    AssistantSettings,
    Chunk,
    Citation,
    Collection,
    Document,
    ModelEndpoint,
    Source,
    Turn,
)
from chatbot.retrieval.search import hybrid_search
from tests.knowledge.ingest_support import CountingEmbeddings

OLD = "Printers on floor 3 need the blue driver."
NEW = "Printers on floor 3 now need the green driver."
QUESTION = "Which driver do the printers on floor 3 need?"


def _knowledge_base(folder: Path) -> Source:
    (folder / "printers.txt").write_text(OLD)
    (folder / "vpn.txt").write_text("Restart the VPN client when the tunnel drops.")
    collection = services.collection_create(
        name="Office IT", groups=Group.objects.filter(name=roles.AGENT)
    )
    source = services.source_create(
        collection=collection, kind="path", location=str(folder), queue=False
    )
    source_ingest(source_id=source.pk, embedder=CountingEmbeddings())
    return source


def _cite(user: User, chunk: Chunk) -> Turn:
    """A finished turn that cited `chunk` as [1], as `chat.services` records one."""
    conversation = chat_services.conversation_create(owner=user)
    turn = chat_services.turn_create(conversation=conversation, user_text=QUESTION)
    Turn.objects.filter(pk=turn.pk).update(status=Turn.Status.DONE, answer="Blue [1].")
    Citation.objects.create(
        turn=turn, chunk=chunk, number=1, score=0.03, similarity=0.8, cited=True
    )
    return turn


def _texts(user: User, query: str) -> list[str]:
    return [hit.text for hit in hybrid_search(user=user, query=query, k=10).hits]


@pytest.mark.django_db(transaction=True)
async def test_a_past_answer_keeps_its_passage_when_the_document_changes(
    tmp_path: Path,
    alice: User,
    fake_endpoint: Callable[..., ModelEndpoint],
    client_as: Callable[[User], Client],
) -> None:
    source = await sync_to_async(_knowledge_base)(tmp_path)
    await AssistantSettings.objects.aupdate_or_create(
        pk=1, defaults={"grounding": "required", "min_similarity": 0.2, "min_coverage": 0.0}
    )
    await sync_to_async(fake_endpoint)(["Use the blue driver [1]."])
    conversation = await sync_to_async(chat_services.conversation_create)(owner=alice)
    turn = await sync_to_async(chat_services.turn_create)(
        conversation=conversation, user_text=QUESTION
    )
    await turn_run(turn_id=turn.pk, emit=_ignore)
    cited = await Citation.objects.select_related("chunk").aget(turn=turn, number=1)
    assert cited.cited and cited.chunk.text == OLD

    (tmp_path / "printers.txt").write_text(NEW)
    await sync_to_async(source_ingest)(source_id=source.pk, embedder=CountingEmbeddings())

    again = await Citation.objects.select_related("chunk").aget(pk=cited.pk)
    assert again.chunk_id == cited.chunk_id and again.chunk.text == OLD
    assert again.chunk.retired_at is not None
    texts = await sync_to_async(_texts)(alice, "printer driver floor 3")
    assert NEW in texts and OLD not in texts, "search never returns the retired text"
    panel = await sync_to_async(
        lambda: client_as(alice).get(reverse("chat:sources", args=[turn.pk])).content.decode()
    )()
    assert "blue driver" in panel and "since changed" in panel
    document = await Document.objects.aget(source=source, external_id="printers.txt")
    page = await sync_to_async(
        lambda: client_as(alice).get(reverse("knowledge:document", args=[document.pk]))
    )()
    assert "green driver" in page.content.decode() and "blue driver" not in page.content.decode()


async def _ignore(text: str) -> None:
    return None


@pytest.mark.django_db
def test_it_deletes_old_chunks_no_answer_cites_once_past_the_kept_window(
    tmp_path: Path, alice: User, settings: Settings
) -> None:
    source = _knowledge_base(tmp_path)
    old = Chunk.objects.get(document__external_id="printers.txt")
    (tmp_path / "printers.txt").write_text(NEW)

    source_ingest(source_id=source.pk, embedder=CountingEmbeddings())
    source_ingest(source_id=source.pk, embedder=CountingEmbeddings())

    assert Chunk.objects.get(pk=old.pk).retired_at is not None, "a past version, kept 90 days"
    settings.KNOWLEDGE_VERSIONS_KEEP_DAYS = 0
    source_ingest(source_id=source.pk, embedder=CountingEmbeddings())

    assert not Chunk.objects.filter(pk=old.pk).exists()
    assert not Chunk.objects.filter(retired_at__isnull=False).exists()


@pytest.mark.django_db
def test_it_deletes_a_retired_chunk_once_no_answer_cites_it(
    tmp_path: Path, alice: User, settings: Settings
) -> None:
    settings.KNOWLEDGE_VERSIONS_KEEP_DAYS = 0  # only the citation keeps it
    source = _knowledge_base(tmp_path)
    turn = _cite(alice, Chunk.objects.get(document__external_id="printers.txt"))
    (tmp_path / "printers.txt").write_text(NEW)
    source_ingest(source_id=source.pk, embedder=CountingEmbeddings())
    source_ingest(source_id=source.pk, embedder=CountingEmbeddings())
    retired = Chunk.objects.get(document__source=source, retired_at__isnull=False)
    assert retired.text == OLD, "kept across runs while the answer cites it"

    chat_services.conversation_delete(conversation=turn.conversation)
    source_ingest(source_id=source.pk, embedder=CountingEmbeddings())

    assert not Chunk.objects.filter(pk=retired.pk).exists()
    assert list(
        Chunk.objects.filter(document__external_id="printers.txt").values_list("text", flat=True)
    ) == [NEW]


@pytest.mark.django_db
def test_a_cited_document_that_left_the_source_is_kept_out_of_search_and_lists(
    tmp_path: Path, alice: User, client_as: Callable[[User], Client]
) -> None:
    source = _knowledge_base(tmp_path)
    chunk = Chunk.objects.get(document__external_id="printers.txt")
    turn = _cite(alice, chunk)
    (tmp_path / "printers.txt").unlink()

    source_ingest(source_id=source.pk, embedder=CountingEmbeddings())

    assert Citation.objects.get(turn=turn).chunk.text == OLD
    document = Document.objects.get(pk=chunk.document_id)
    assert document.status == Document.Status.RETIRED
    assert OLD not in _texts(alice, "printer driver floor 3")
    page = client_as(alice).get(reverse("knowledge:source", args=[source.pk])).content.decode()
    assert "vpn.txt" in page and "printers.txt" not in page
    collection = Collection.objects.get(pk=source.collection_id)
    listed = selectors.sources_for(collection).get()
    assert listed.document_count == 1  # type: ignore[attr-defined]

    (tmp_path / "printers.txt").write_text(OLD)
    source_ingest(source_id=source.pk, embedder=CountingEmbeddings())

    document.refresh_from_db()
    assert document.status == Document.Status.OK, "a document that comes back is current again"
    assert OLD in _texts(alice, "printer driver floor 3")


@pytest.mark.django_db
def test_deleting_a_source_deletes_its_retired_chunks_and_their_citations(
    tmp_path: Path, alice: User
) -> None:
    source = _knowledge_base(tmp_path)
    turn = _cite(alice, Chunk.objects.get(document__external_id="printers.txt"))
    (tmp_path / "printers.txt").write_text(NEW)
    source_ingest(source_id=source.pk, embedder=CountingEmbeddings())

    services.source_delete(source=source)

    assert not Chunk.objects.exists()
    assert not Citation.objects.filter(turn=turn).exists()
    assert Turn.objects.filter(pk=turn.pk).exists(), "the answer itself stays"
