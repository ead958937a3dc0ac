"""The one jsonl loader: the ../shared/evalsets documents and questions, and dataset imports, read
through the same lines, with a bad line named by file and number (or by number for an upload)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.offline.data import (
    BadJsonlFile,
    GoldQuestion,
    Question,
    load_documents,
    load_gold_questions,
    load_items,
    load_questions,
)
from tests.evaluation.offline.evalset import write_jsonl

FAQ_QUERY = "How do I reset my password?"
COVIDQA_QUESTION = "When does the reset link expire?"
DOCUMENT = {"id": "kb-1", "title": "Reset a password", "text": "The link expires after 30 minutes."}
FAQ = {"id": "q1", "query": FAQ_QUERY, "relevant_doc_ids": ["kb-1"]}
COVIDQA = {
    "id": "c1",
    "question": COVIDQA_QUESTION,
    "answers": ["after 30 minutes"],
    "doc_id": "kb-1",
}


def test_it_reads_every_evalsets_shape_through_one_loader(tmp_path: Path) -> None:
    questions = write_jsonl(tmp_path / "q.jsonl", [json.dumps(FAQ), "", json.dumps(COVIDQA)])
    documents = write_jsonl(tmp_path / "d.jsonl", [json.dumps(DOCUMENT)])

    assert load_documents(documents) == {"kb-1": DOCUMENT}
    assert load_questions(questions) == [
        Question("q1", FAQ_QUERY, frozenset({"kb-1"})),
        Question("c1", COVIDQA_QUESTION, frozenset({"kb-1"})),
    ]
    assert load_questions(questions, limit=1) == [load_questions(questions)[0]]
    gold = write_jsonl(tmp_path / "gold.jsonl", [json.dumps(COVIDQA)])
    assert load_gold_questions(gold) == [
        GoldQuestion("c1", COVIDQA_QUESTION, ("after 30 minutes",), "kb-1")
    ]
    faq, covidqa = load_items(questions.read_bytes().splitlines())
    assert (faq.question, faq.answers, faq.metadata) == (
        FAQ_QUERY,
        (),
        {"relevant_doc_ids": ["kb-1"]},
    )
    assert (covidqa.expected_answer, covidqa.metadata) == ("after 30 minutes", {"doc_id": "kb-1"})


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([json.dumps(FAQ), "{not json"], r"q.jsonl:2: not valid JSON"),
        ([json.dumps(FAQ), "", '["a list"]'], r"q.jsonl:3: not a JSON object"),
        ([json.dumps({"id": "q2", "query": "vpn?"})], r"q.jsonl:1: needs 'query' and 'relevant"),
        ([json.dumps({**FAQ, "query": 3})], r"q.jsonl:1: 'query' must be text"),
    ],
)
def test_it_names_the_file_and_line_of_a_bad_question(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    with pytest.raises(BadJsonlFile, match=message):
        load_questions(write_jsonl(tmp_path / "q.jsonl", lines))


def test_it_names_the_line_of_a_bad_import_line() -> None:
    lines = [json.dumps(COVIDQA).encode(), b'{"question": "q", "answers": "a"}']
    with pytest.raises(BadJsonlFile, match=r"^Line 2: 'answers' must be a list of texts\.$"):
        load_items(lines)
    with pytest.raises(BadJsonlFile, match=r"^Line 1: not UTF-8 text\.$"):
        load_items(["é".encode("latin-1")])


def test_it_explains_a_questions_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin.jsonl"
    path.write_bytes(json.dumps(FAQ).encode() + b"\n" + '{"query": "café?"}'.encode("latin-1"))
    with pytest.raises(BadJsonlFile, match=r"latin.jsonl:2: not UTF-8 text"):
        load_questions(path)


def test_it_refuses_relevant_doc_ids_that_are_not_a_list(tmp_path: Path) -> None:
    """A string here once became one relevant document per character: recall 0, no error."""
    path = write_jsonl(tmp_path / "q.jsonl", [json.dumps({**FAQ, "relevant_doc_ids": "kb-1"})])
    with pytest.raises(BadJsonlFile, match=r"q.jsonl:1: needs 'query' and 'relevant_doc_ids'"):
        load_questions(path)


def test_it_explains_a_file_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(BadJsonlFile, match=r"Cannot read .*missing.jsonl: No such file"):
        load_documents(tmp_path / "missing.jsonl")
    with pytest.raises(BadJsonlFile, match=r"d.jsonl:1: a document needs 'id' and 'text'"):
        load_documents(write_jsonl(tmp_path / "d.jsonl", [json.dumps({"id": "kb-1"})]))
    with pytest.raises(BadJsonlFile, match=r"g.jsonl:1: needs 'question', 'answers'"):
        load_gold_questions(write_jsonl(tmp_path / "g.jsonl", [json.dumps(FAQ)]))
