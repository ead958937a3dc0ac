"""A person's turn with one of everything derived from it, dated in the past, and a training
export file holding a row of it (in the exports' own format: `metadata.turn_id`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from chatbot.models import (
    AnswerCacheEntry,
    Conversation,
    Dataset,
    DatasetItem,
    Escalation,
    Export,
    Feedback,
    Judge,
    JudgeScore,
    ModelEndpoint,
    Review,
    ReviewItem,
    Span,
    Turn,
)
from chatbot.models.knowledge import EMBEDDING_DIMENSIONS


def endpoint() -> ModelEndpoint:
    return ModelEndpoint.objects.update_or_create(
        name="retention-fake",
        defaults={
            "provider": ModelEndpoint.Provider.FAKE,
            "model_id": "fake-list-chat",
            "style": ModelEndpoint.Style.CHAT,
            "options": {"responses": ["ok"]},
        },
    )[0]


@dataclass
class Made:
    conversation: Conversation
    turn: Turn


def turn_with_everything(
    owner: User, *, reviewer: User, days_ago: int, question: str = "my secret question"
) -> Made:
    moment = timezone.now() - timedelta(days=days_ago)
    conversation = Conversation.objects.create(owner=owner, title=f"About {question}")
    turn = Turn.objects.create(
        conversation=conversation,
        user_text=question,
        answer=f"answer to {question}",
        status=Turn.Status.DONE,
        endpoint=endpoint(),
        tokens_in=11,
        tokens_out=7,
        cost=Decimal("0.25"),
        ttft_ms=120.0,
        total_ms=900.0,
    )
    Span.objects.create(
        turn=turn, kind=Span.Kind.LLM, name="answer", started_at=moment, attributes={"q": question}
    )
    Feedback.objects.create(turn=turn, user=owner, rating=-1, comment=f"bad: {question}")
    judge = Judge.objects.get_or_create(
        name="retention-format", version=1, defaults={"kind": Judge.Kind.FORMAT}
    )[0]
    JudgeScore.objects.create(
        turn=turn, judge=judge, score=0.2, passed=False, status="done", details={"why": question}
    )
    item = ReviewItem.objects.create(turn=turn)
    review = Review.objects.create(
        item=item,
        turn=turn,
        reviewer=reviewer,
        accuracy=2,
        completeness=2,
        relevance=2,
        tone=3,
        safety=5,
        corrected_answer=f"better answer to {question}",
        comment="fix it",
    )
    Escalation.objects.create(turn=turn, requested_by=owner, reason=f"human please: {question}")
    AnswerCacheEntry.objects.create(
        key=f"k{turn.pk}",
        scope="s",
        question=question,
        embedding=[0.1] * EMBEDDING_DIMENSIONS,
        answer=turn.answer,
        source_turn=turn,
        endpoint=endpoint(),
    )
    dataset = Dataset.objects.get_or_create(name="retention-golden")[0]
    DatasetItem.objects.create(
        dataset=dataset, question=question, source_turn=turn, source_review=review, added_in=1
    )
    Turn.objects.filter(pk=turn.pk).update(created_at=moment, finished_at=moment)
    Conversation.objects.filter(pk=conversation.pk).update(created_at=moment, updated_at=moment)
    for model in (Feedback, JudgeScore, Review, ReviewItem, Escalation):
        model.objects.filter(turn=turn).update(created_at=moment)
    AnswerCacheEntry.objects.filter(source_turn=turn).update(created_at=moment)
    DatasetItem.objects.filter(source_turn=turn).update(created_at=moment)
    turn.refresh_from_db()
    return Made(conversation, turn)


def export_with(turns: list[Turn], *, days_ago: int = 0) -> Export:
    """A finished SFT export whose file has one row per turn."""
    export = Export.objects.create(kind=Export.Kind.SFT, status=Export.Status.DONE)
    folder = Path(settings.EXPORTS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"sft-{export.pk:06d}.jsonl"
    lines = [
        json.dumps(
            {
                "messages": [{"role": "user", "content": t.user_text}],
                "metadata": {"turn_id": t.pk, "export_id": export.pk},
            }
        )
        for t in turns
    ]
    (folder / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    Export.objects.filter(pk=export.pk).update(
        path=name, rows_written=len(lines), created_at=timezone.now() - timedelta(days=days_ago)
    )
    export.refresh_from_db()
    return export


def past(days: int) -> datetime:
    return timezone.now() - timedelta(days=days)
