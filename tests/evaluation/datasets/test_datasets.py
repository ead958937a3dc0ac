"""Datasets: versions without copies, jsonl import in the evalsets format, and one-click items
made from reviewed turns with their provenance."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from chatbot.models import Dataset, DatasetItem
from evaluation.datasets import selectors, services
from evaluation.offline.data import BadJsonlFile, ItemData
from tests.evaluation.datasets.helpers import (
    EVALSET_ROWS,
    jsonl_bytes,
    make_dataset,
    reviewed_turn,
)
from tests.evaluation.judging import PASSWORD_CHUNK
from tests.evaluation.offline.evalset import write_jsonl

pytestmark = pytest.mark.django_db


def questions(items: object) -> list[str]:
    return [i.question for i in items]  # type: ignore[attr-defined]


def test_it_keeps_every_version_of_a_dataset_without_copying_items() -> None:
    dataset = make_dataset(questions=["First?", "Second?"])
    assert dataset.version == 1

    third = services.dataset_item_add(dataset=dataset, data=ItemData(question="Third?"))
    assert (dataset.version, third.added_in) == (2, 2)
    first = DatasetItem.objects.get(question="First?")
    services.dataset_item_remove(item=first)
    dataset.refresh_from_db()

    assert dataset.version == 3
    assert questions(selectors.dataset_items(dataset, version=1)) == ["First?", "Second?"]
    assert questions(selectors.dataset_items(dataset, version=2)) == ["First?", "Second?", "Third?"]
    assert questions(selectors.dataset_items(dataset)) == ["Second?", "Third?"]
    assert DatasetItem.objects.filter(dataset=dataset).count() == 3
    assert selectors.datasets_with_counts().get(pk=dataset.pk).item_count == 2  # type: ignore[attr-defined]


def test_it_refuses_to_remove_an_item_twice() -> None:
    dataset = make_dataset()
    item = selectors.dataset_items(dataset).get()
    services.dataset_item_remove(item=item)

    with pytest.raises(services.InvalidDataset, match="already removed in version 2"):
        services.dataset_item_remove(item=item)
    dataset.refresh_from_db()
    assert dataset.version == 2


def test_it_imports_the_evalsets_format_as_one_version(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "questions.jsonl", EVALSET_ROWS)

    imported = services.dataset_import_jsonl(path=path, name="covid")

    assert imported.created and imported.added == 3 and imported.dataset.version == 1
    q1, _, q3 = selectors.dataset_items(imported.dataset)
    assert (q1.external_id, q1.expected_answer, q1.answers) == (
        "q1", "after 30 minutes", ["after 30 minutes", "30 minutes"],
    )  # fmt: skip
    assert q1.metadata == {"doc_id": "pw"} and not q1.unanswerable
    assert q3.unanswerable and q3.answers == [] and q3.expected_answer == ""

    # Importing again into the same dataset adds the file as the next version, all at once.
    again = services.dataset_import_jsonl(file=BytesIO(jsonl_bytes(EVALSET_ROWS[:2])), name="covid")
    assert not again.created and again.dataset.version == 2
    assert selectors.dataset_items(again.dataset, version=1).count() == 3
    assert selectors.dataset_items(again.dataset).count() == 5
    assert set(DatasetItem.objects.filter(added_in=2).values_list("external_id", flat=True)) == {
        "q1",
        "q2",
    }


def test_it_imports_plain_items_with_context(tmp_path: Path) -> None:
    rows: list[dict[str, object]] = [
        {"question": "How long is the reset link valid?", "expected_answer": "30 minutes",
         "context": "The reset link expires after 30 minutes."},
        {"question": "Who approves payroll corrections?", "answer": "The finance lead",
         "context": ["Payroll corrections", "are approved by the finance lead."]},
        {"query": "Can I reuse a mask?", "relevant_doc_ids": ["faq-1"]},
    ]  # fmt: skip
    imported = services.dataset_import_jsonl(path=write_jsonl(tmp_path / "a.jsonl", rows), name="x")

    one, two, three = selectors.dataset_items(imported.dataset)
    assert one.answers == ["30 minutes"] and one.context.startswith("The reset link")
    assert two.expected_answer == "The finance lead"
    assert two.context == "Payroll corrections\n\nare approved by the finance lead."
    assert three.question == "Can I reuse a mask?" and three.answers == []
    assert three.metadata == {"relevant_doc_ids": ["faq-1"]}


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"question": "ok?", "answers": ["a"]}', "{not json"], r"Line 2: not valid JSON"),
        (['{"question": "ok?"}', "", '["a list"]'], r"Line 3: not a JSON object"),
        (['{"answers": ["a"]}'], r"Line 1: needs a 'question'"),
        (['{"question": "q", "answers": "a"}'], r"Line 1: 'answers' must be a list of texts"),
        (['{"question": "q", "unanswerable": "yes"}'], r"Line 1: 'unanswerable' must be true"),
        (['{"question": "q", "expected_answer": 3}'], r"Line 1: 'expected_answer' must be text"),
        (["", "  "], r"holds no items"),
    ],
)
def test_it_explains_a_bad_file_by_line_and_writes_nothing(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", lines)

    with pytest.raises(BadJsonlFile, match=message):
        services.dataset_import_jsonl(path=path, name="bad")
    assert not Dataset.objects.exists() and not DatasetItem.objects.exists()


def test_it_explains_a_file_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(BadJsonlFile, match="Cannot read"):
        services.dataset_import_jsonl(path=tmp_path / "missing.jsonl", name="x")


def test_it_refuses_a_duplicate_or_empty_dataset_name() -> None:
    make_dataset(name="Regression")
    with pytest.raises(services.InvalidDataset, match="exists already"):
        services.dataset_create(name="  Regression ")
    with pytest.raises(services.InvalidDataset, match="Give the dataset a name"):
        services.dataset_create(name="   ")


def test_it_turns_a_reviewed_turn_into_an_item_with_its_provenance(alice: User, rita: User) -> None:
    review = reviewed_turn(alice, rita)
    dataset = make_dataset()

    item = services.dataset_item_from_review(review=review, dataset=dataset)

    assert item.question == "How do I reset a forgotten password?"
    assert item.expected_answer == review.corrected_answer and item.answers == [
        review.corrected_answer
    ]
    assert item.context == f"[1] {PASSWORD_CHUNK}"
    assert (item.source_turn_id, item.source_review_id) == (review.turn_id, review.pk)
    assert item.metadata["original_answer"] == "Ask IT."
    assert item.metadata["causes"] == ["retrieval_miss"] and item.metadata["reviewer"] == "rita"
    assert not item.unanswerable
    assert (dataset.version, item.added_in) == (2, 2)
    # A second click returns the same item and makes no new version.
    assert services.dataset_item_from_review(review=review, dataset=dataset).pk == item.pk
    dataset.refresh_from_db()
    assert dataset.version == 2


def test_it_uses_an_approved_answer_and_an_approved_refusal(alice: User, rita: User) -> None:
    dataset = make_dataset()
    good = reviewed_turn(alice, rita, corrected="", approved=True, answer="Use tray 2.")
    refusal = reviewed_turn(
        alice, rita, corrected="", approved=True, answer="I don't know.", no_answer=True
    )

    kept = services.dataset_item_from_review(review=good, dataset=dataset)
    refused = services.dataset_item_from_review(review=refusal, dataset=dataset)

    assert kept.expected_answer == "Use tray 2." and not kept.unanswerable
    assert refused.unanswerable and refused.answers == [] and refused.context == ""


def test_it_refuses_a_review_with_nothing_to_learn_from(alice: User, rita: User) -> None:
    review = reviewed_turn(alice, rita, corrected="", approved=False)
    with pytest.raises(services.InvalidDataset, match="no corrected answer"):
        services.dataset_item_from_review(review=review, dataset=make_dataset())
