"""Shared data for the dataset and experiment tests: jsonl files in the evalsets shape, reviewed
turns recorded through the chat services, and datasets made through our own services."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from django.contrib.auth.models import User

from chatbot.models import Dataset, Review, ReviewItem, Turn
from evaluation.datasets import services
from evaluation.offline.data import ItemData, item_from_row
from tests.evaluation.judging import PASSWORD_CHUNK, finished_turn

# The shape of ../shared/evalsets/covidqa_dev/questions.jsonl, plus an unanswerable one.
EVALSET_ROWS: list[dict[str, Any]] = [
    {"id": "q1", "question": "When does the password reset link expire?",
     "answers": ["after 30 minutes", "30 minutes"], "doc_id": "pw"},
    {"id": "q2", "question": "Which tray should I open when the printer jams?",
     "answers": ["tray 2"], "doc_id": "printer"},
    {"id": "q3", "question": "What is the capital of Mongolia?", "answers": [],
     "doc_id": "none", "unanswerable": True},
]  # fmt: skip


def rows_to_items(rows: Sequence[Mapping[str, object]]) -> list[ItemData]:
    """Rows read the way an import reads them."""
    return [item_from_row(dict(row)) for row in rows]


def jsonl_bytes(rows: Sequence[Mapping[str, object]]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def make_dataset(name: str = "Regression", questions: Sequence[str] = ("Q one?",)) -> Dataset:
    return services.dataset_create(
        name=name,
        items=[ItemData(question=q, expected_answer="A", answers=("A",)) for q in questions],
    )


def reviewed_turn(
    user: User,
    reviewer: User,
    *,
    corrected: str = "Click Forgot password on the sign-in page; the link lasts 30 minutes [1].",
    approved: bool = False,
    answer: str = "Ask IT.",
    no_answer: bool = False,
) -> Review:
    turn: Turn = finished_turn(
        user,
        answer=answer,
        context=() if no_answer else (PASSWORD_CHUNK,),
        no_answer=no_answer,
    )
    item = ReviewItem.objects.create(turn=turn, status=ReviewItem.Status.DONE)
    return Review.objects.create(
        item=item,
        turn=turn,
        reviewer=reviewer,
        accuracy=2,
        completeness=2,
        relevance=4,
        tone=5,
        safety=5,
        corrected_answer=corrected,
        causes=["retrieval_miss"],
        approved=approved,
    )
