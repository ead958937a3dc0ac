"""Reviewed and rated turns for the export and reward-model tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User

from chatbot.chat import services as chat
from chatbot.models import Export, Review, ReviewItem, Turn
from evaluation.exports import services
from tests.evaluation.judging import finished_turn


def review(
    turn: Turn,
    reviewer: User,
    *,
    grade: int = 5,
    corrected: str = "",
    approved: bool = False,
) -> Review:
    """A submitted review, written straight to the table the review queue writes to."""
    item, _ = ReviewItem.objects.get_or_create(turn=turn)
    return Review.objects.create(
        item=item,
        turn=turn,
        reviewer=reviewer,
        **dict.fromkeys(Review.RUBRIC, grade),
        corrected_answer=corrected,
        approved=approved,
    )


def rated(user: User, rating: int, *, question: str, answer: str) -> Turn:
    turn = finished_turn(user, question=question, answer=answer)
    chat.feedback_set(turn=turn, user=user, rating=rating)
    return turn


def run_export(kind: str, **params: Any) -> tuple[Export, list[dict[str, Any]]]:
    """Create and run an export in this process; returns it and its parsed lines."""
    export = services.export_create(kind=kind, queue=False, **params)
    services.export_run(export_id=export.pk)
    export.refresh_from_db()
    assert export.status == Export.Status.DONE, export.error
    path = services.export_file(export)
    assert path is not None
    return export, read_jsonl(path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def assert_sft_row(row: dict[str, Any]) -> None:
    """The chat-messages fine-tuning format: system, user, assistant, and provenance."""
    assert set(row) == {"messages", "metadata"}
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
    for message in row["messages"]:
        assert set(message) == {"role", "content"}
        assert isinstance(message["content"], str) and message["content"].strip()
    meta = row["metadata"]
    assert isinstance(meta["turn_id"], int) and isinstance(meta["review_id"], int)
    assert meta["source"] in {"corrected", "approved"}
    assert isinstance(meta["export_id"], int)


def assert_dpo_row(row: dict[str, Any]) -> None:
    """The preference-pair format: prompt, chosen, rejected (distinct), and provenance."""
    assert set(row) == {"prompt", "chosen", "rejected", "metadata"}
    for name in ("prompt", "chosen", "rejected"):
        assert isinstance(row[name], str) and row[name].strip()
    assert row["chosen"] != row["rejected"]
    meta = row["metadata"]
    assert meta["source"] in {"correction", "thumbs"}
    assert isinstance(meta["chosen_turn_id"], int) and isinstance(meta["rejected_turn_id"], int)
    assert "review_id" in meta and isinstance(meta["export_id"], int)
