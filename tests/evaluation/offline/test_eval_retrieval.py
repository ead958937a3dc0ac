"""`manage.py eval_retrieval` on a tiny inline evaluation set, ingested through the real pipeline."""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command

from chatbot.models import Chunk, Collection
from tests.evaluation.offline.evalset import DOCUMENTS, write_jsonl

pytestmark = pytest.mark.django_db

FAQ_QUESTIONS = [
    {"id": "q1", "query": "I forgot my password, how do I reset it?", "relevant_doc_ids": ["kb-1"]},
    {"id": "q2", "query": "How do I connect to the VPN from home?", "relevant_doc_ids": ["kb-2"]},
    {"id": "q3", "query": "The printer jammed, what now?", "relevant_doc_ids": ["kb-3"]},
    {"id": "q4", "query": "How are travel expenses reimbursed?", "relevant_doc_ids": ["kb-4"]},
]
COVIDQA_QUESTIONS = [
    {"id": "c1", "question": "When does the password reset link expire?",
     "answers": ["after 30 minutes"], "doc_id": "kb-1"},
    {"id": "c2", "question": "Which tray do I open when the printer jams?",
     "answers": ["tray 2"], "doc_id": "kb-3"},
]  # fmt: skip


def run(*args: str) -> str:
    out = StringIO()
    call_command("eval_retrieval", *args, stdout=out)
    return out.getvalue()


def table(output: str) -> dict[str, list[str]]:
    """The metrics table as {mode: [cells...]}, keyed also by "mode" for the header."""
    rows: dict[str, list[str]] = {}
    for line in output.splitlines():
        cells = line.split()
        if cells and cells[0] in ("mode", "dense", "sparse", "fused", "reranked", "api"):
            rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture
def documents(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "documents.jsonl", DOCUMENTS)


def test_it_prints_recall_mrr_and_latency_for_each_leg(documents: Path, tmp_path: Path) -> None:
    questions = write_jsonl(tmp_path / "queries.jsonl", FAQ_QUESTIONS)
    output = run("--documents", str(documents), "--questions", str(questions), "--k", "1,3")

    assert "Ingested 4 documents (4 chunks)" in output
    assert "Asking 4 questions" in output
    rows = table(output)
    assert rows["mode"] == ["recall@1", "recall@3", "MRR@3", "p50", "ms", "p95", "ms"]
    for mode in ("dense", "fused"):
        recall_1, recall_3, mrr, p50, p95 = rows[mode]
        assert (recall_1, recall_3, mrr) == ("1.000", "1.000", "1.000")
        assert 0 < float(p50) <= float(p95)
    assert re.fullmatch(r"[01]\.\d{3}", rows["sparse"][0])
    # What POST /api/search returns, counted by passage: one-chunk documents, so as reranked.
    assert rows["api"][:3] == rows["reranked"][:3] == ["1.000", "1.000", "1.000"]


def test_it_reads_covidqa_questions_and_honours_limit(documents: Path, tmp_path: Path) -> None:
    questions = write_jsonl(tmp_path / "questions.jsonl", COVIDQA_QUESTIONS)
    output = run("--documents", str(documents), "--questions", str(questions), "--limit", "1")

    assert "Asking 1 questions" in output
    assert table(output)["fused"][:4] == ["1.000", "1.000", "1.000", "1.000"]


def test_it_deletes_the_scratch_collection_unless_kept(documents: Path, tmp_path: Path) -> None:
    questions = write_jsonl(tmp_path / "queries.jsonl", FAQ_QUESTIONS[:1])
    run("--documents", str(documents), "--questions", str(questions))
    assert not Collection.objects.exists() and not Chunk.objects.exists()
    assert not Group.objects.filter(name__startswith="eval-retrieval-").exists()
    assert not User.objects.filter(username__startswith="eval-retrieval-").exists()

    output = run("--documents", str(documents), "--questions", str(questions), "--keep")
    kept = Collection.objects.get()
    assert f"Kept collection {kept.name!r}" in output
    assert kept.chunks.count() == 4


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--k", "five"], "--k takes whole numbers"),
        (["--k", "0"], "--k values must be 1 or more"),
        (["--title-weight", "2"], "from 0 to 1"),
        (["--candidates", "0"], "--candidates must be 1 or more"),
    ],
)
def test_it_explains_bad_options(
    documents: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    questions = write_jsonl(tmp_path / "queries.jsonl", FAQ_QUESTIONS)
    with pytest.raises(CommandError, match=message):
        run("--documents", str(documents), "--questions", str(questions), *extra)
    assert not Collection.objects.exists()


def test_it_explains_a_bad_questions_file(documents: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "q1", "query": "vpn", "relevant_doc_ids": ["kb-2"]}\n{"id": "q2"}\n')
    with pytest.raises(CommandError, match=r"bad.jsonl:2: needs 'query'"):
        run("--documents", str(documents), "--questions", str(bad))
    with pytest.raises(CommandError, match="No documents file"):
        run("--documents", str(tmp_path / "missing.jsonl"), "--questions", str(bad))


def test_it_explains_a_questions_file_that_is_not_utf8(documents: Path, tmp_path: Path) -> None:
    """Such a file once ended the command in a traceback (UnicodeDecodeError)."""
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(
        '{"id": "q1", "query": "café?", "relevant_doc_ids": ["kb-1"]}'.encode("latin-1")
    )
    with pytest.raises(CommandError, match=r"latin.jsonl:1: not UTF-8 text"):
        run("--documents", str(documents), "--questions", str(latin))
    assert not Collection.objects.exists()
