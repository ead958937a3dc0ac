"""The fixed tuning/confirming splits: the shared file's parts are disjoint and whole, and
`--splits --part` asks only that part's questions (eval_retrieval, eval_answers)."""

from __future__ import annotations

import json
from collections.abc import Callable
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from chatbot.models import Collection, ModelEndpoint
from evaluation.offline.data import load_documents, load_gold_questions, load_questions
from evaluation.offline.splits import BadSplits, choose_set, load_splits
from tests.evaluation.offline.evalset import DOCUMENTS, write_jsonl

EVALSETS = Path(settings.BASE_DIR).parent / "shared" / "evalsets"

# Tune questions are labelled with their right document; confirm questions with a wrong one, so
# a part's recall says which questions were asked: 1.000 for tune's, 0.000 for confirm's.
FAQ = [
    {"id": "q1", "query": "I forgot my password, how do I reset it?", "relevant_doc_ids": ["kb-1"]},
    {"id": "q2", "query": "How do I connect to the VPN from home?", "relevant_doc_ids": ["kb-2"]},
    {"id": "q3", "query": "The printer jammed, what now?", "relevant_doc_ids": ["kb-4"]},
    {"id": "q4", "query": "How are travel expenses reimbursed?", "relevant_doc_ids": ["kb-3"]},
]
COVIDQA = [
    {"id": "c1", "question": "When does the password reset link expire?",
     "answers": ["after 30 minutes"], "doc_id": "kb-1"},
    {"id": "c2", "question": "Which gateway do I pick for the VPN?",
     "answers": ["the nearest gateway"], "doc_id": "kb-2"},
    {"id": "c3", "question": "Which tray do I open when the printer jams?",
     "answers": ["tray 2"], "doc_id": "kb-3"},
    {"id": "c4", "question": "Within how many days are receipts submitted?",
     "answers": ["within 60 days"], "doc_id": "kb-4"},
]  # fmt: skip
SPLITS = {
    "about": "tiny splits for the tests",
    "mini_qa": {"tune_doc_ids": ["kb-1", "kb-2"], "confirm_doc_ids": ["kb-3", "kb-4"]},
    "mini_faq": {"tune_query_ids": ["q1", "q2"], "confirm_query_ids": ["q3", "q4"]},
}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps(SPLITS), encoding="utf-8")
    return {
        "documents": write_jsonl(tmp_path / "documents.jsonl", DOCUMENTS),
        "faq": write_jsonl(tmp_path / "queries.jsonl", FAQ),
        "covidqa": write_jsonl(tmp_path / "questions.jsonl", COVIDQA),
        "splits": splits,
    }


def retrieval(files: dict[str, Path], questions: str, *args: str) -> str:
    out = StringIO()
    call_command(
        "eval_retrieval",
        "--documents", str(files["documents"]), "--questions", str(files[questions]),
        "--splits", str(files["splits"]), "--k", "1", *args,
        stdout=out,
    )  # fmt: skip
    return out.getvalue()


def fused_recall_at_1(output: str) -> list[str]:
    return [line.split()[1] for line in output.splitlines() if line.startswith("fused")]


# --- the shared splits ---------------------------------------------------------------------------


def test_it_keeps_the_shared_parts_disjoint_and_covering_each_set() -> None:
    if not (EVALSETS / "splits.json").is_file():
        pytest.skip(f"no shared evaluation sets at {EVALSETS}")
    splits = load_splits(EVALSETS / "splits.json")  # refuses parts that overlap
    assert set(splits) == {"covidqa_dev", "faq"}

    covidqa = splits["covidqa_dev"]
    assert covidqa.by == "doc" and not covidqa.tune & covidqa.confirm
    articles = set(load_documents(EVALSETS / "covidqa_dev" / "documents.jsonl"))
    assert covidqa.tune | covidqa.confirm == articles
    assert (len(covidqa.tune), len(covidqa.confirm)) == (20, 10)
    gold = load_gold_questions(EVALSETS / "covidqa_dev" / "questions.jsonl")
    assert choose_set(splits, [(q.id, (q.doc_id,)) for q in gold]) is covidqa

    faq = splits["faq"]
    assert faq.by == "query" and not faq.tune & faq.confirm
    queries = load_questions(EVALSETS / "faq" / "queries.jsonl")
    assert faq.tune | faq.confirm == {q.id for q in queries}
    assert (len(faq.tune), len(faq.confirm)) == (122, 122)
    assert choose_set(splits, [(q.id, q.relevant) for q in queries]) is faq


# --- eval_retrieval ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_asks_only_the_questions_of_the_part(files: dict[str, Path]) -> None:
    tune = retrieval(files, "faq", "--part", "tune")
    assert "Set 'mini_faq' of" in tune and "part tune: 2 of 4 questions" in tune
    assert "Asking 2 questions of part tune" in tune
    assert "Ingested 4 documents" in tune  # every document, whichever part is asked
    assert fused_recall_at_1(tune) == ["1.000"]

    confirm = retrieval(files, "faq", "--part", "confirm")
    assert fused_recall_at_1(confirm) == ["0.000"]

    # A set split by document: a question goes with its article.
    both = retrieval(files, "covidqa", "--part", "both", "--limit", "1")
    assert "Set 'mini_qa' of" in both and "(split by doc), part confirm: 2 of 4" in both
    assert both.count("Asking 1 questions of part") == 2
    assert "Both parts together" in both
    assert len(fused_recall_at_1(both)) == 3
    assert not Collection.objects.exists()


@pytest.mark.django_db
def test_it_asks_every_question_without_splits(files: dict[str, Path]) -> None:
    out = StringIO()
    call_command(
        "eval_retrieval", "--documents", str(files["documents"]),
        "--questions", str(files["faq"]), "--k", "1", stdout=out,
    )  # fmt: skip
    assert "Asking 4 questions (" in out.getvalue()
    assert fused_recall_at_1(out.getvalue()) == ["0.500"]


def write_splits(files: dict[str, Path], content: object) -> None:
    text = content if isinstance(content, str) else json.dumps(content)
    files["splits"].write_text(text, encoding="utf-8")


@pytest.mark.parametrize(
    ("splits", "args", "message"),
    [
        ("{not json", [], r"splits.json is not valid JSON"),
        (["a list"], [], r"must hold a JSON object of sets"),
        ({"x": {"tune_ids": []}}, [], r"set 'x' needs 'tune_doc_ids' and 'confirm_doc_ids'"),
        ({"x": {"tune_query_ids": "q1", "confirm_query_ids": []}}, [], r"must be a list of ids"),
        (
            {"x": {"tune_query_ids": ["q1", "q2"], "confirm_query_ids": ["q2", "q3", "q4"]}},
            [],
            r"1 ids in both parts, e.g. q2; the parts must not overlap",
        ),
        (
            {"x": {"tune_query_ids": ["q1"], "confirm_query_ids": ["q2", "q3"]}},
            [],
            r"not a set of .*splits.json .*'x', holds 3 of 4, missing e.g. q4",
        ),
        (
            {
                "a": SPLITS["mini_faq"],
                "b": {"tune_query_ids": ["q1"], "confirm_query_ids": ["q2", "q3", "q4"]},
            },
            [],
            r"fit several sets of .* \(a, b\); name one with --set",
        ),
        (SPLITS, ["--set", "covidqa_dev"], r"No set 'covidqa_dev' in .*; it has mini_faq, mini_qa"),
        (
            {**SPLITS, "mini_qa": {"tune_doc_ids": ["kb-1"], "confirm_doc_ids": ["kb-2"]}},
            ["--set", "mini_qa"],
            r"2 of 4 questions are in neither part of set 'mini_qa'.*e.g. q3, q4",
        ),
    ],
)
@pytest.mark.django_db
def test_it_explains_a_splits_file_that_does_not_fit(
    files: dict[str, Path], splits: object, args: list[str], message: str
) -> None:
    write_splits(files, splits)
    with pytest.raises(CommandError, match=message):
        retrieval(files, "faq", "--part", "tune", *args)
    assert not Collection.objects.exists()


@pytest.mark.django_db
def test_it_explains_split_options_that_do_not_go_together(
    files: dict[str, Path], tmp_path: Path
) -> None:
    base = ["--documents", str(files["documents"]), "--questions", str(files["faq"])]
    with pytest.raises(CommandError, match="--splits and --part go together"):
        call_command("eval_retrieval", *base, "--part", "tune", stdout=StringIO())
    with pytest.raises(CommandError, match="--splits and --part go together"):
        call_command("eval_retrieval", *base, "--splits", str(files["splits"]), stdout=StringIO())
    with pytest.raises(CommandError, match=r"Cannot read the splits file .*missing\.json"):
        retrieval({**files, "splits": tmp_path / "missing.json"}, "faq", "--part", "tune")
    write_splits(files, {"about": "nothing"})
    with pytest.raises(BadSplits, match="holds no sets"):
        load_splits(files["splits"])


# --- eval_answers --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_holds_out_the_parts_own_articles_and_asks_only_its_questions(
    files: dict[str, Path], fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    fake_endpoint(["I don't know."])
    out = StringIO()
    call_command(
        "eval_answers",
        "--documents", str(files["documents"]), "--questions", str(files["covidqa"]),
        "--splits", str(files["splits"]), "--part", "confirm", "--holdout", "0.5",
        "--min-similarity", "0", "--json",
        stdout=out, stderr=StringIO(),
    )  # fmt: skip

    data = json.loads(out.getvalue())
    assert (data["part"], data["split_set"]) == ("confirm", "mini_qa")
    # Half of the confirming part's two articles is held out; the tuning part's are ingested
    # as distractors, and none of their questions is asked.
    assert data["documents_held_out"] == ["kb-4"]
    assert data["documents_ingested"] == 3
    assert [(q["id"], q["answerable"]) for q in data["questions"]] == [
        ("c3", True),
        ("c4", False),
    ]
    # The shape programs outside the repo read is unchanged.
    assert data["answerable"]["answered_rate"] == 0.0
    assert data["unanswerable"]["refusal_rate"] == 1.0

    with pytest.raises(
        CommandError, match="4 of 4 questions are in neither part of set 'mini_faq'"
    ):
        call_command(
            "eval_answers",
            "--documents", str(files["documents"]), "--questions", str(files["covidqa"]),
            "--splits", str(files["splits"]), "--part", "tune", "--set", "mini_faq",
            stdout=StringIO(), stderr=StringIO(),
        )  # fmt: skip
