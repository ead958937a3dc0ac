"""`manage.py train_retrieval`: fitted on the tuning part of real ingested sets, measured on both
parts, written where search reads it, and the same file for the same input."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from chatbot.retrieval.answerable import ANSWERABLE_FEATURES, THRESHOLDS
from chatbot.retrieval.rerank import RERANK_FEATURES, LinearModel
from tests.evaluation.offline.evalset import DOCUMENTS, write_jsonl

pytestmark = pytest.mark.django_db

# Two questions a document, one in each part; a set split by question.
QUERIES = [
    {"id": "t1", "query": "I forgot my password", "relevant_doc_ids": ["kb-1"]},
    {"id": "c1", "query": "reset link for my sign-in", "relevant_doc_ids": ["kb-1"]},
    {"id": "t2", "query": "working from home over the VPN", "relevant_doc_ids": ["kb-2"]},
    {"id": "c2", "query": "which VPN gateway should I pick", "relevant_doc_ids": ["kb-2"]},
    {"id": "t3", "query": "paper stuck in the office printer", "relevant_doc_ids": ["kb-3"]},
    {"id": "c3", "query": "printer jammed again", "relevant_doc_ids": ["kb-3"]},
    {"id": "t4", "query": "how do I claim travel costs", "relevant_doc_ids": ["kb-4"]},
    {"id": "c4", "query": "deadline for expense receipts", "relevant_doc_ids": ["kb-4"]},
]
SPLITS = {
    "mini": {
        "tune_query_ids": ["t1", "t2", "t3", "t4"],
        "confirm_query_ids": ["c1", "c2", "c3", "c4"],
    }
}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps(SPLITS), encoding="utf-8")
    return {
        "documents": write_jsonl(tmp_path / "documents.jsonl", DOCUMENTS),
        "queries": write_jsonl(tmp_path / "queries.jsonl", QUERIES),
        "splits": splits,
    }


def train(files: dict[str, Path], out: Path, *extra: str) -> str:
    stdout = StringIO()
    call_command(
        "train_retrieval",
        "--splits", str(files["splits"]),
        "--documents", str(files["documents"]), "--questions", str(files["queries"]),
        "--out", str(out), *extra,
        stdout=stdout,
    )  # fmt: skip
    return stdout.getvalue()


def test_it_trains_both_models_and_reports_both_parts(
    files: dict[str, Path], tmp_path: Path, cast: object
) -> None:
    out = tmp_path / "weights"
    report = train(files, out)

    assert "mini: ingested 4 documents" in report
    for part in ("tune", "confirm"):
        assert f"mini         {part:<8}         4  fused" in report
        assert f"mini         {part:<8}         4  reranked" in report
    assert "No-answer classifier at threshold" in report
    reranker = LinearModel.from_json(
        json.loads((out / "reranker.json").read_text()), expected=RERANK_FEATURES
    )
    assert reranker.about["trained_on"] == {"mini": 4}, "only the tuning questions"
    assert set(reranker.about["recall"]["mini"]) == {"tune", "confirm"}
    classifier = LinearModel.from_json(
        json.loads((out / "answerable.json").read_text()), expected=ANSWERABLE_FEATURES
    )
    assert classifier.about["threshold"] in THRESHOLDS
    rows = classifier.about["trade_off"]
    assert [row["threshold"] for row in rows] == list(THRESHOLDS)
    assert all(0 <= row[p][k] <= 1 for row in rows for p in ("tune", "confirm") for k in row[p])


def test_the_same_input_writes_the_same_files(
    files: dict[str, Path], tmp_path: Path, cast: object
) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    train(files, first)
    train(files, second)
    for name in ("reranker.json", "answerable.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes()


def test_it_explains_bad_input(files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="one --questions file for each --documents"):
        train(files, tmp_path, "--documents", str(files["documents"]))
    with pytest.raises(CommandError, match="No documents file"):
        call_command(
            "train_retrieval", "--splits", str(files["splits"]),
            "--documents", str(tmp_path / "missing.jsonl"), "--questions", str(files["queries"]),
        )  # fmt: skip
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"x": {"tune_query_ids": ["zz"], "confirm_query_ids": []}}))
    with pytest.raises(CommandError, match="not a set of"):
        call_command(
            "train_retrieval", "--splits", str(other),
            "--documents", str(files["documents"]), "--questions", str(files["queries"]),
        )  # fmt: skip
