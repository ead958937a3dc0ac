"""The scratch knowledge base the offline evaluations build: ingested through the real pipeline,
seen only by its own user, and gone after the run, whatever happened in it."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection

from chatbot.models import Chunk, Collection, Document, Source
from chatbot.retrieval.search import hybrid_search
from evaluation.offline.scratch import IngestFailed, scratch_knowledge_base
from tests.evaluation.offline.evalset import DOCUMENTS, write_jsonl

pytestmark = pytest.mark.django_db


def assert_nothing_left() -> None:
    assert not Collection.objects.exists() and not Source.objects.exists()
    assert not Document.objects.exists() and not Chunk.objects.exists()
    assert not Group.objects.filter(name__startswith="eval-test-").exists()
    assert not User.objects.filter(username__startswith="eval-test-").exists()


def test_it_removes_the_scratch_knowledge_base_after_a_run(alice: User) -> None:
    with scratch_knowledge_base(DOCUMENTS, purpose="eval_test") as scratch:
        assert scratch.name.startswith("eval-test-")
        assert (scratch.documents, scratch.chunks) == (4, 4)
        hits = hybrid_search(user=scratch.user, query="printer jammed", k=1).hits
        assert [hit.external_id for hit in hits] == ["kb-3"]
        # Nobody else sees it.
        assert not hybrid_search(user=alice, query="printer jammed", k=1).hits

    assert_nothing_left()
    assert User.objects.filter(pk=alice.pk).exists()


def test_it_removes_it_when_the_run_fails() -> None:
    with (
        pytest.raises(RuntimeError, match="the model went away"),
        scratch_knowledge_base(DOCUMENTS, purpose="eval_test"),
    ):
        raise RuntimeError("the model went away")
    assert_nothing_left()


def test_it_removes_it_when_ingestion_fails(tmp_path: Path) -> None:
    with (
        pytest.raises(IngestFailed, match=r"Ingesting .*missing.jsonl failed"),
        scratch_knowledge_base(tmp_path / "missing.jsonl", purpose="eval_test"),
    ):
        pytest.fail("a knowledge base that failed to ingest must not be used")
    assert_nothing_left()


def test_it_ingests_a_file_as_it_is_and_keeps_it_when_asked(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "documents.jsonl", DOCUMENTS)
    with scratch_knowledge_base(path, purpose="eval_test", keep=True) as scratch:
        pass
    kept = Collection.objects.get(name=scratch.name)
    assert kept.chunks.count() == 4
    assert kept.sources.get().name == "documents.jsonl"


def test_it_keeps_the_figures_when_the_scratch_cleanup_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A database that refuses the clean-up (here a real trigger) must not throw away a run's
    figures: the scratch objects stay, and the log says what to delete by hand."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'deleting is refused'; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER refuse_delete BEFORE DELETE ON chatbot_collection "
            "FOR EACH ROW EXECUTE FUNCTION refuse_delete()"
        )
    with scratch_knowledge_base(DOCUMENTS[:1], purpose="eval_answers") as scratch:
        figures = {"mean_f1": 0.5}
    assert figures == {"mean_f1": 0.5}
    assert Collection.objects.filter(name=scratch.name).exists()
    assert (
        f"could not delete the scratch collection, user and group '{scratch.name}'" in caplog.text
    )
