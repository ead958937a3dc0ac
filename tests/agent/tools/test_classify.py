"""The `classify` tool and its training: a TF-IDF + logistic-regression pipeline per task, trained
on the demo tickets, versioned, measured against the majority baseline on a held-out split, and
served by the active version."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.template.loader import render_to_string

from chatbot.agent.tools import TOOLS, ToolContext, ToolFailed
from chatbot.agent.tools.classifier_selectors import classifier_versions
from chatbot.agent.tools.classifier_training import (
    DEMO_TICKETS,
    classifier_activate,
    classifier_train,
    classifiers_demo_ensure,
    labelled_rows_read,
    labelled_texts,
)
from chatbot.models import ClassifierVersion

pytestmark = pytest.mark.django_db

REFUND = "I was charged twice for the Pro plan this month. Please refund the duplicate charge."


def demo(task: str, limit: int | None = None) -> tuple[list[str], list[str]]:
    rows = labelled_rows_read(DEMO_TICKETS)[:limit]
    return labelled_texts(rows, text_columns=("subject", "body"), label_column=task)


def context(user: User) -> ToolContext:
    return ToolContext(user=user, options={}, timeout_s=10.0)


def write_csv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    lines = ["subject,body,intent"] + [",".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- training ------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["intent", "priority"])
def test_it_beats_the_majority_baseline_on_the_demo_tickets(task: str) -> None:
    texts, labels = demo(task)

    version = classifier_train(task=task, texts=texts, labels=labels)

    assert (version.task, version.version, version.active) == (task, 1, True)
    assert (version.trained_on, version.held_out) == (300, 100)
    assert version.heldout_accuracy is not None and version.baseline_accuracy is not None
    # Demo figures: intent 89% vs 23%, priority 50% vs 30% (most tickets carry no urgency cue).
    assert version.heldout_accuracy > version.baseline_accuracy + 0.15
    assert version.labels == sorted(set(labels))
    assert set(version.metrics["per_label"]) == set(labels)
    assert {"precision", "recall"} <= set(version.metrics["per_label"][labels[0]])
    assert len(version.data_sha256) == 64


def test_it_returns_the_existing_version_when_trained_again_on_the_same_rows() -> None:
    texts, labels = demo("intent")
    first = classifier_train(task="intent", texts=texts, labels=labels)

    again = classifier_train(task="intent", texts=texts, labels=labels)

    assert again.pk == first.pk
    assert ClassifierVersion.objects.filter(task="intent").count() == 1


def test_it_numbers_a_new_version_for_new_rows_and_makes_it_the_active_one() -> None:
    fewer = demo("intent", limit=300)
    first = classifier_train(task="intent", texts=fewer[0], labels=fewer[1])

    second = classifier_train(task="intent", texts=demo("intent")[0], labels=demo("intent")[1])

    assert (first.version, second.version) == (1, 2)
    first.refresh_from_db()
    assert (first.active, second.active) == (False, True)
    # Versions are numbered per task.
    other = classifier_train(task="priority", texts=fewer[0], labels=demo("priority", 300)[1])
    assert other.version == 1


def test_it_keeps_a_version_that_does_not_beat_the_baseline_inactive() -> None:
    texts, labels = demo("intent")
    good = classifier_train(task="intent", texts=texts, labels=labels)
    # The same text for every row: nothing to learn, so no better than the commonest label.
    noise = ["please help with my account"] * 40
    guesses = ["how_to"] * 30 + ["bug_report"] * 10

    worse = classifier_train(task="intent", texts=noise, labels=guesses)

    assert worse.version == 2 and not worse.active
    assert "does not beat the majority baseline" in worse.metrics["inactive_reason"]
    good.refresh_from_db()
    assert good.active
    classifier_activate(version=worse)
    good.refresh_from_db()
    assert not good.active
    assert ClassifierVersion.objects.get(pk=worse.pk).active


def test_it_trains_the_demo_classifiers_once() -> None:
    trained = classifiers_demo_ensure()

    assert sorted(v.task for v in trained) == ["intent", "priority"]
    assert all(v.active for v in trained)
    assert classifiers_demo_ensure() == []
    assert ClassifierVersion.objects.count() == 2


# --- the tool ------------------------------------------------------------------------------------


def test_it_classifies_a_refund_text_as_a_refund_request(alice: User) -> None:
    texts, labels = demo("intent")
    version = classifier_train(task="intent", texts=texts, labels=labels)
    tool = TOOLS["classify"]

    result = tool.run({"task": "intent", "text": REFUND}, context(alice))

    assert result.data["label"] == "refund_request"
    assert result.data["version"] == version.version
    assert result.data["top"][0] == ["refund_request", result.data["probability"]]
    assert result.summary == f"intent: refund_request ({result.data['probability']:.2f})"
    assert "refund_request" in result.model_text()
    assert "majority baseline" in result.model_text()


def test_it_loads_the_model_once_and_picks_up_a_newly_activated_version(
    alice: User, django_assert_num_queries: Any
) -> None:
    tool = TOOLS["classify"]
    fewer = demo("intent", limit=300)
    classifier_train(task="intent", texts=fewer[0], labels=fewer[1])
    tool.run({"task": "intent", "text": REFUND}, context(alice))

    # The active version's id only: the fitted model stays loaded.
    with django_assert_num_queries(1):
        tool.run({"task": "intent", "text": REFUND}, context(alice))

    texts, labels = demo("intent")
    classifier_train(task="intent", texts=texts, labels=labels)
    result = tool.run({"task": "intent", "text": REFUND}, context(alice))
    assert result.data["version"] == 2


def test_it_says_in_words_when_no_classifier_is_trained(alice: User) -> None:
    with pytest.raises(ToolFailed) as failed:
        TOOLS["classify"].run({"task": "priority", "text": REFUND}, context(alice))

    assert failed.value.user_message == (
        "No trained classifier for 'priority' yet. An admin can train one with "
        "manage.py train_classifier."
    )


def test_it_describes_the_trained_tasks_and_their_labels() -> None:
    tool = TOOLS["classify"]
    assert "No classifier is trained yet" in tool.describe({})
    texts, labels = demo("priority")
    classifier_train(task="priority", texts=texts, labels=labels)

    described = tool.describe({})

    assert "priority (labels: high, low, normal, urgent)" in described
    assert tool.schema["properties"]["task"]["enum"] == ["intent", "priority"]


# --- the command ---------------------------------------------------------------------------------


def test_it_prints_accuracy_against_the_baseline_per_task() -> None:
    out = StringIO()

    call_command("train_classifier", "--data", str(DEMO_TICKETS), stdout=out)
    call_command("train_classifier", "--data", str(DEMO_TICKETS), stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0].startswith("intent: trained v1: 300 rows trained, 100 held out; held-out ")
    assert "vs majority baseline" in lines[0] and lines[0].endswith("Active.")
    assert lines[1].startswith("priority: trained v1:")
    assert lines[2].startswith("intent: already trained on these rows as v1")
    assert ClassifierVersion.objects.count() == 2


def test_it_trains_one_task_from_another_label_column_in_jsonl(tmp_path: Path) -> None:
    rows = labelled_rows_read(DEMO_TICKETS)
    data = tmp_path / "tickets.jsonl"
    data.write_text(
        "\n".join(json.dumps({"text": r["body"], "urgency": r["priority"]}) for r in rows),
        encoding="utf-8",
    )
    out = StringIO()

    call_command(
        "train_classifier",
        "--data", str(data),
        "--task", "priority",
        "--text-columns", "text",
        "--label-column", "urgency",
        stdout=out,
    )  # fmt: skip

    assert out.getvalue().startswith("priority: trained v1:")
    assert ClassifierVersion.objects.get().labels == ["high", "low", "normal", "urgent"]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


BAD_DATA = {
    "missing file": (lambda p: p / "missing.csv", "No file at"),
    "not csv or jsonl": (lambda p: write(p / "t.txt", "subject,body,intent\n"), "expected a .csv"),
    "bad jsonl": (lambda p: write(p / "t.jsonl", '{"body": "hi"}\nnot json\n'), "line 2 is not"),
    "missing column": (lambda p: write(p / "t.csv", "subject,intent\nhi,how_to\n"), "body"),
    "no label column": (lambda p: write(p / "t.csv", "subject,body\na,b\n"), "no label column"),
    "too few rows": (
        lambda p: write_csv(p / "t.csv", [("a", "b", "how_to")] * 5),
        "Only 5 labelled rows",
    ),
    "one label": (lambda p: write_csv(p / "t.csv", [("a", "b", "how_to")] * 30), "same label"),
    "rare label": (
        lambda p: write_csv(p / "t.csv", [("a", "b", "how_to")] * 30 + [("c", "d", "x")]),
        "Too few examples of x",
    ),
}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_it_refuses_bad_training_data_with_a_clear_error(tmp_path: Path, case: str) -> None:
    make, message = BAD_DATA[case]
    path = make(tmp_path)

    with pytest.raises(CommandError, match=message):
        call_command("train_classifier", "--data", str(path), stdout=StringIO())
    assert not ClassifierVersion.objects.exists()


def test_it_refuses_a_label_column_without_a_single_task() -> None:
    with pytest.raises(CommandError, match="needs a single --task"):
        call_command("train_classifier", "--data", str(DEMO_TICKETS), "--label-column", "product")


# --- the console partial -------------------------------------------------------------------------


def test_it_shows_each_versions_accuracy_against_the_baseline_in_the_console() -> None:
    texts, labels = demo("intent")
    version = classifier_train(task="intent", texts=texts, labels=labels)
    assert version.heldout_accuracy is not None and version.baseline_accuracy is not None

    html = render_to_string("console/_classifiers.html", {"classifiers": classifier_versions()})

    accuracy = round(version.heldout_accuracy * 100)
    baseline = round(version.baseline_accuracy * 100)
    assert "Held-out accuracy" in html and "Majority baseline" in html
    assert f"{accuracy}%" in html and f"{baseline}%" in html
    lift = round((version.heldout_accuracy - version.baseline_accuracy) * 100)
    assert f"+{lift} pts" in html
    assert "badge-ok" in html and "v1" in html


def test_it_shows_how_to_train_when_there_is_no_classifier() -> None:
    html = render_to_string("console/_classifiers.html", {"classifiers": classifier_versions()})

    assert "manage.py train_classifier" in html
