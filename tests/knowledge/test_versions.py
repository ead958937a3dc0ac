"""Knowledge-base versions: every change of a collection's chunks moves its version and stamps the
chunks, past versions stay readable (search `as_of`), and pruning keeps the window and the cited
chunks. Real ingestion, Postgres + pgvector and MiniLM."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django.fixtures import Settings

from chatbot.accounts import roles
from chatbot.chat import services as chat_services
from chatbot.knowledge import services
from chatbot.knowledge.ingest import source_ingest, versions_prune
from chatbot.models import Chunk, Citation, Collection, Source, Turn
from chatbot.retrieval.search import hybrid_search
from tests.knowledge.ingest_support import CountingEmbeddings

pytestmark = pytest.mark.django_db

OLD = "Printers on floor 3 need the blue driver from the intranet."
NEW = "Printers on floor 3 now need the green driver from the vendor site."
QUERY = "printer driver floor 3"


def _ingest(source: Source) -> None:
    source_ingest(source_id=source.pk, embedder=CountingEmbeddings())


def _knowledge_base(folder: Path, *, name: str = "Office IT", group: str = roles.AGENT) -> Source:
    (folder / "printers.txt").write_text(OLD)
    (folder / "vpn.txt").write_text("Restart the VPN client when the tunnel drops at night.")
    (folder / "mail.txt").write_text("Suspicious mail goes to the spam folder; never open links.")
    collection = services.collection_create(name=name, groups=Group.objects.filter(name=group))
    source = services.source_create(
        collection=collection, kind="path", location=str(folder), queue=False
    )
    _ingest(source)
    return source


def _version(source: Source) -> int:
    return Collection.objects.get(pk=source.collection_id).version


def _texts(
    user: User,
    *,
    as_of: dict[int, int] | None = None,
    dense_weight: float = 1.0,
    sparse_weight: float = 0.5,
) -> list[str]:
    result = hybrid_search(
        user=user,
        query=QUERY,
        k=10,
        as_of=as_of,
        dense_weight=dense_weight,
        sparse_weight=sparse_weight,
    )
    return [hit.text for hit in result.hits]


def _rows(source: Source) -> list[tuple[object, ...]]:
    return list(
        Chunk.objects.filter(document__source=source)
        .order_by("pk")
        .values_list("pk", "valid_from", "valid_to", "retired_at")
    )


def test_each_document_written_moves_the_version_and_stamps_its_chunks(
    tmp_path: Path, alice: User
) -> None:
    source = _knowledge_base(tmp_path)

    assert _version(source) == 3, "three documents, three versions"
    stamps = sorted(
        Chunk.objects.filter(document__source=source).values_list("valid_from", "valid_to")
    )
    assert stamps == [(1, None), (2, None), (3, None)]


def test_an_unchanged_run_changes_nothing(tmp_path: Path, alice: User) -> None:
    source = _knowledge_base(tmp_path)
    before, version = _rows(source), _version(source)

    _ingest(source)
    _ingest(source)

    assert _rows(source) == before, "no new chunk, no retirement, no new stamp"
    assert _version(source) == version


def test_as_of_the_old_version_both_legs_read_the_old_text(tmp_path: Path, alice: User) -> None:
    source = _knowledge_base(tmp_path)
    old = {source.collection_id: _version(source)}
    (tmp_path / "printers.txt").write_text(NEW)

    _ingest(source)

    assert _version(source) == old[source.collection_id] + 1
    retired = Chunk.objects.get(text=OLD)
    assert (retired.valid_to, retired.retired_at is not None) == (_version(source), True)
    for dense, sparse in ((1.0, 0.0), (0.0, 0.5), (1.0, 0.5)):
        then = _texts(alice, as_of=old, dense_weight=dense, sparse_weight=sparse)
        now = _texts(alice, dense_weight=dense, sparse_weight=sparse)
        assert OLD in then and NEW not in then, (dense, sparse)
        assert NEW in now and OLD not in now, (dense, sparse)
    latest = {source.collection_id: _version(source)}
    assert NEW in _texts(alice, as_of=latest) and OLD not in _texts(alice, as_of=latest)


@pytest.mark.parametrize(
    "weights",
    [{}, {"sparse_weight": 0.0}, {"dense_weight": 0.0}, {"rerank": False}],
    ids=["hybrid", "dense", "sparse", "fused"],
)
def test_as_of_an_unchanged_collection_is_the_current_search(
    tmp_path: Path, alice: User, weights: dict[str, object]
) -> None:
    source = _knowledge_base(tmp_path)
    (tmp_path / "printers.txt").write_text(NEW)
    _ingest(source)  # a retired chunk in the table must not change anything either
    as_of = {source.collection_id: _version(source)}

    for query in (QUERY, "vpn tunnel drops", "spam mail links", "driver vendor"):
        now = hybrid_search(user=alice, query=query, k=5, **weights)  # type: ignore[arg-type]
        then = hybrid_search(user=alice, query=query, k=5, as_of=as_of, **weights)  # type: ignore[arg-type]
        assert [h.chunk_id for h in then.hits] == [h.chunk_id for h in now.hits], query
        assert [h.sparse_rank for h in then.hits] == [h.sparse_rank for h in now.hits], query
        assert [h.dense_rank for h in then.hits] == [h.dense_rank for h in now.hits], query


def test_a_vanished_document_is_readable_as_of_the_version_before(
    tmp_path: Path, alice: User
) -> None:
    source = _knowledge_base(tmp_path)
    before = {source.collection_id: _version(source)}
    (tmp_path / "printers.txt").unlink()

    _ingest(source)

    assert OLD not in _texts(alice)
    assert OLD in _texts(alice, as_of=before)
    assert OLD in _texts(alice, as_of=before, dense_weight=0.0)
    assert OLD not in _texts(alice, as_of={source.collection_id: _version(source)})


def test_as_of_never_widens_what_the_person_may_see_now(
    tmp_path: Path, alice: User, adam: User
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    source = _knowledge_base(tmp_path / "a", name="Admin only", group=roles.ADMIN)
    as_of = {source.collection_id: _version(source)}

    assert _texts(alice, as_of=as_of) == [], "alice does not see the admins' collection"
    assert _texts(alice, as_of=as_of, dense_weight=0.0) == []
    assert OLD in _texts(adam, as_of=as_of)

    other = _knowledge_base(tmp_path / "b", name="Help")
    assert _texts(alice, as_of=as_of) == [], "a collection as_of leaves out is not read"
    services.source_set_enabled(source=other, enabled=False)
    assert _texts(alice, as_of={other.collection_id: _version(other)}) == [], "disabled now"


def _cite(user: User, chunk: Chunk) -> Turn:
    conversation = chat_services.conversation_create(owner=user)
    turn = chat_services.turn_create(conversation=conversation, user_text="Which driver?")
    Turn.objects.filter(pk=turn.pk).update(status=Turn.Status.DONE, answer="Blue [1].")
    Citation.objects.create(
        turn=turn, chunk=chunk, number=1, score=0.03, similarity=0.8, cited=True
    )
    return turn


def test_pruning_keeps_the_window_and_the_cited_chunks(
    tmp_path: Path, alice: User, settings: Settings
) -> None:
    source = _knowledge_base(tmp_path)
    _cite(alice, Chunk.objects.get(text__startswith="Restart the VPN"))
    for name, text in [("printers.txt", NEW), ("vpn.txt", "Reconnect the VPN."), ("mail.txt", "")]:
        (tmp_path / name).write_text(text or "Report phishing to security.")
    _ingest(source)
    retired = Chunk.objects.filter(retired_at__isnull=False)
    assert retired.count() == 3
    recent = retired.get(text__startswith="Suspicious mail")
    retired.exclude(pk=recent.pk).update(retired_at=timezone.now() - timedelta(days=91))

    assert versions_prune() == 1, "only the old, uncited one"

    kept = set(Chunk.objects.filter(retired_at__isnull=False).values_list("text", flat=True))
    assert kept == {recent.text, "Restart the VPN client when the tunnel drops at night."}
    settings.KNOWLEDGE_VERSIONS_KEEP_DAYS = 0
    assert versions_prune(source_id=source.pk) == 1
    assert set(Chunk.objects.filter(retired_at__isnull=False).values_list("text", flat=True)) == {
        "Restart the VPN client when the tunnel drops at night."
    }


def test_a_cited_passage_keeps_its_text_through_two_reingestions(
    tmp_path: Path, alice: User, client_as: Callable[[User], Client]
) -> None:
    source = _knowledge_base(tmp_path)
    turn = _cite(alice, Chunk.objects.get(text=OLD))
    for text in (NEW, "Printers on floor 3 use the red driver since May."):
        (tmp_path / "printers.txt").write_text(text)
        _ingest(source)

    citation = Citation.objects.select_related("chunk").get(turn=turn)
    assert citation.chunk.text == OLD and citation.chunk.retired_at is not None
    panel = client_as(alice).get(reverse("chat:sources", args=[turn.pk])).content.decode()
    assert "blue driver" in panel and "since changed" in panel
    assert Chunk.objects.filter(document__external_id="printers.txt").count() == 3
