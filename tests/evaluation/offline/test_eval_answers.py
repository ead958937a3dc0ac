"""`manage.py eval_answers` end to end on a tiny generated set: real ingestion, retrieval and
grounding; the model is langchain-core's fake chat model at the network edge."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command

from chatbot.models import AssistantSettings, Chunk, Collection, ModelEndpoint, Turn
from evaluation.offline.answers import holdout_ids, interleave
from evaluation.offline.data import GoldQuestion
from tests.evaluation.offline.evalset import write_jsonl

DOCUMENTS = [
    {"id": "doc-1", "title": "Reset a password",
     "text": "Open the sign-in page and click 'Forgot password'. We email you a reset link; "
             "the emailed link expires after 30 minutes."},
    {"id": "doc-2", "title": "Volcanoes",
     "text": "Basaltic lava erupts at temperatures between 1,100 and 1,250 degrees Celsius. "
             "The Ring of Fire is a chain of volcanoes around the Pacific Ocean."},
    {"id": "doc-3", "title": "Printer jams",
     "text": "When the office printer jams, open tray 2, remove the crumpled paper and restart "
             "the printer."},
    {"id": "doc-4", "title": "Sourdough baking",
     "text": "Feed the sourdough starter with equal weights of flour and water and let it "
             "ferment for 8 to 12 hours before baking bread."},
]  # fmt: skip
# With --holdout 0.5, doc-2 and doc-4 (every second sorted id) are not ingested.
QUESTIONS = [
    {"id": "q1", "question": "When does the password reset link expire?",
     "answers": ["after 30 minutes"], "doc_id": "doc-1"},
    {"id": "q2", "question": "How long is the emailed reset link valid?",
     "answers": ["half an hour", "30 minutes"], "doc_id": "doc-1"},
    {"id": "q3", "question": "Which tray should I open when the printer jams?",
     "answers": ["tray 2"], "doc_id": "doc-3"},
    {"id": "q4", "question": "How hot is basaltic lava when it erupts?",
     "answers": ["between 1,100 and 1,250 degrees Celsius"], "doc_id": "doc-2"},
    {"id": "q5", "question": "What is the Ring of Fire?",
     "answers": ["a chain of volcanoes around the Pacific Ocean"], "doc_id": "doc-2"},
    {"id": "q6", "question": "How long should a sourdough starter ferment?",
     "answers": ["8 to 12 hours"], "doc_id": "doc-4"},
]  # fmt: skip
FAKE_ANSWER = "The emailed link expires after 30 minutes [1]."
# Scored without "[1]": emailed link expires after 30 minutes (6 tokens).
#   q1 gold "after 30 minutes": 3 common -> P 1/2, R 1 -> F1 2/3; containment {30, minutes} 2/2
#   q2 best gold "30 minutes": 2 common -> P 1/3, R 1 -> F1 1/2; containment 2/2
#   q3 gold "tray 2": nothing in common -> F1 0, containment 0
MEAN_F1 = (2 / 3 + 1 / 2 + 0) / 3


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return (
        write_jsonl(tmp_path / "documents.jsonl", DOCUMENTS),
        write_jsonl(tmp_path / "questions.jsonl", QUESTIONS),
    )


def run(files: tuple[Path, Path], *args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    documents, questions = files
    call_command(
        "eval_answers",
        "--documents",
        str(documents),
        "--questions",
        str(questions),
        *args,
        stdout=out,
        stderr=err,
    )
    return out.getvalue(), err.getvalue()


def table(output: str) -> list[tuple[str, str]]:
    rows = []
    for line in output.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == 2:
            rows.append((cells[0], cells[1]))
    return rows


def assert_nothing_left() -> None:
    assert not Collection.objects.exists() and not Chunk.objects.exists()
    assert not Group.objects.filter(name__startswith="eval-answers-").exists()
    assert not User.objects.filter(username__startswith="eval-answers-").exists()
    assert not Turn.objects.exists()


@pytest.mark.django_db
def test_it_scores_answers_and_refusals_through_the_real_pipeline(
    files: tuple[Path, Path], fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    fake_endpoint([FAKE_ANSWER])
    # The similarity floor decides what retrieval refuses here; the shipped no-answer classifier,
    # trained on knowledge bases of hundreds of chunks, is off for this two-chunk one (its own
    # tests build their data).
    output, progress = run(
        files,
        *("--holdout", "0.5", "--min-similarity", "0.4", "--min-answerable", "0"),
        *("--grounding", "required"),
    )

    assert "Ingested 2 documents (2 chunks)" in output
    assert "endpoint fake-model, grounding required, k=5" in output
    rows = table(output)
    labels = [label for label, _ in rows]
    values = dict(rows[: labels.index("unanswerable questions")])
    assert values["answerable questions"] == "3"
    assert values["mean token F1"] == f"{MEAN_F1:.3f}" == "0.389"
    assert values["mean containment"] == "0.667"
    assert values["contains rate (>= 0.5)"] == "0.667"
    assert values["answered rate (not refused)"] == "1.000"
    # Every answer cites [1], the top chunk, which comes from the question's own document.
    assert values["citation accuracy"] == "1.000"
    assert float(values["mean latency ms"]) > 0
    assert values["model errors"] == "0"
    refusals = dict(rows[labels.index("unanswerable questions") :])
    assert refusals["unanswerable questions"] == "3"
    assert refusals["refusal rate"] == "1.000"
    assert refusals["by retrieval (no answer)"] == "1.000"
    assert refusals["by the model's words"] == "0.000"
    assert refusals["no-answer threshold (min similarity)"] == "0.40"

    assert "question 1 of 6 (answerable q1): F1 0.67" in progress
    assert "question 6 of 6 (unanswerable q5): no answer (retrieval)" in progress
    assert_nothing_left()
    assert not AssistantSettings.objects.exists()


@pytest.mark.django_db
def test_it_counts_a_model_that_says_it_does_not_know_and_restores_the_settings(
    files: tuple[Path, Path], fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    saved = AssistantSettings.objects.create(
        pk=1, grounding="required", retrieval_k=4, min_similarity=0.9
    )
    fake_endpoint(["I don't know; the sources do not say."])
    output, _ = run(
        files, "--holdout", "0.5", "--min-similarity", "0", "--grounding", "preferred",
        "--limit", "2", "--json",
    )  # fmt: skip

    data = json.loads(output)
    assert (data["grounding"], data["k"], data["min_similarity"]) == ("preferred", 4, 0.0)
    assert data["documents_held_out"] == ["doc-2", "doc-4"]
    assert data["documents_ingested"] == 2
    answerable, unanswerable = data["answerable"], data["unanswerable"]
    assert answerable["n"] == 2 and unanswerable["n"] == 2
    assert answerable["answered_rate"] == 0.0
    assert answerable["mean_f1"] == 0.0 and answerable["contains_rate"] == 0.0
    assert answerable["citation_accuracy"] is None  # nothing was answered
    assert unanswerable["refusal_rate"] == 1.0
    assert unanswerable["refused_by_retrieval"] == 0.0
    assert unanswerable["refused_by_model"] == 1.0
    # --limit 2 per set, taken in turn from each document
    assert [q["id"] for q in data["questions"]] == ["q1", "q3", "q4", "q6"]
    assert all(q["answer"] == "I don't know; the sources do not say." for q in data["questions"])

    after = AssistantSettings.objects.get(pk=1)
    assert (after.grounding, after.retrieval_k, after.min_similarity) == ("required", 4, 0.9)
    assert after.updated_at == saved.updated_at
    assert_nothing_left()


@pytest.mark.django_db
def test_it_explains_bad_files_and_options(
    files: tuple[Path, Path], tmp_path: Path, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    fake_endpoint()
    documents, questions = files
    with pytest.raises(CommandError, match="No questions file at"):
        run((documents, tmp_path / "missing.jsonl"))
    with pytest.raises(CommandError, match="No documents file at"):
        run((tmp_path / "missing.jsonl", questions))

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(QUESTIONS[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(CommandError, match=r"bad.jsonl:2: not valid JSON"):
        run((documents, bad))
    bad.write_text(json.dumps({"id": "q1", "question": "vpn?", "doc_id": "doc-1"}) + "\n")
    with pytest.raises(CommandError, match=r"bad.jsonl:1: needs 'question', 'answers'"):
        run((documents, bad))
    bad.write_text(json.dumps({"id": "doc-1", "title": "no text"}) + "\n")
    with pytest.raises(CommandError, match=r"bad.jsonl:1: a document needs 'id' and 'text'"):
        run((bad, questions))

    with pytest.raises(CommandError, match="--holdout takes a share"):
        run(files, "--holdout", "1")
    with pytest.raises(CommandError, match="--min-similarity takes a number"):
        run(files, "--min-similarity", "1.5")
    with pytest.raises(CommandError, match="'nope' does not exist or is disabled"):
        run(files, "--endpoint", "nope")
    assert_nothing_left()


def test_it_holds_out_an_even_spread_of_the_sorted_documents() -> None:
    ids = [f"d{n:02}" for n in range(30, 0, -1)]
    held = holdout_ids(ids, 0.3)
    assert len(held) == 9
    assert sorted(held) == ["d02", "d06", "d09", "d12", "d16", "d19", "d22", "d26", "d29"]
    assert holdout_ids(ids, 0) == set()
    assert holdout_ids(["only"], 0.9) == set()  # at least one document stays


def test_it_takes_questions_in_turn_from_each_document() -> None:
    def q(id_: str, doc: str) -> GoldQuestion:
        return GoldQuestion(id_, "?", ("a",), doc)

    questions = [q("b1", "b"), q("b2", "b"), q("b3", "b"), q("a1", "a"), q("c1", "c")]
    assert [x.id for x in interleave(questions, 4)] == ["a1", "b1", "c1", "b2"]
    assert [x.id for x in interleave(questions, 10)] == ["a1", "b1", "c1", "b2", "b3"]
