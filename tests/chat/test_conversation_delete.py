"""Deleting a conversation never takes away what reviewers, escalations and datasets rely on."""

from __future__ import annotations

import uuid

import pytest
from django.utils import timezone

from chatbot.chat import selectors, services
from chatbot.models import (
    Conversation,
    Dataset,
    DatasetItem,
    Escalation,
    Judge,
    JudgeScore,
    Review,
    ReviewItem,
    Span,
    Turn,
)


def _answered(conversation: Conversation, question: str) -> Turn:
    turn = services.turn_create(conversation=conversation, user_text=question)
    Turn.objects.filter(pk=turn.pk).update(
        status=Turn.Status.DONE, answer="An answer.", finished_at=timezone.now()
    )
    Span.objects.create(
        id=uuid.uuid4(), turn=turn, kind="agent", name="turn", started_at=timezone.now()
    )
    judge = Judge.objects.create(name=f"judge-{turn.pk}", kind=Judge.Kind.FORMAT)
    JudgeScore.objects.create(turn=turn, judge=judge, score=0.2, passed=False, status="done")
    turn.refresh_from_db()
    return turn


@pytest.mark.django_db
def test_it_keeps_an_escalated_turn_with_its_reviews_scores_and_spans(alice, rita) -> None:
    conversation = services.conversation_create(owner=alice)
    kept = _answered(conversation, "Why was I charged twice?")
    _answered(conversation, "And the second time?")
    services.escalation_create(turn=kept, user=alice, reason="Customer is upset")
    item = ReviewItem.objects.create(turn=kept)
    Review.objects.create(
        item=item, turn=kept, reviewer=rita, accuracy=2, completeness=2, relevance=3, tone=4,
        safety=5,
    )  # fmt: skip

    services.conversation_delete(conversation=conversation)

    # Gone for its owner, everywhere she could reach it...
    assert not selectors.conversations_for(alice).filter(pk=conversation.pk).exists()
    with pytest.raises(Conversation.DoesNotExist):
        selectors.conversation_get_for(alice, conversation.pk)
    with pytest.raises(Turn.DoesNotExist):
        selectors.turn_get_for(alice, kept.pk)
    # ...but everything the reviewers and the escalation rely on is still there.
    assert Turn.objects.filter(pk=kept.pk).exists()
    assert Escalation.objects.filter(turn=kept).exists()
    assert ReviewItem.objects.filter(turn=kept).exists()
    assert Review.objects.filter(turn=kept).count() == 1
    assert JudgeScore.objects.filter(turn=kept).count() == 1
    assert Span.objects.filter(turn=kept).count() == 1


@pytest.mark.django_db
def test_it_keeps_a_turn_that_a_dataset_item_came_from(alice, adam) -> None:
    conversation = services.conversation_create(owner=alice)
    turn = _answered(conversation, "How long is the reset link valid?")
    dataset = Dataset.objects.create(name="Regressions", created_by=adam)
    DatasetItem.objects.create(
        dataset=dataset,
        question=turn.user_text,
        answers=["30 minutes"],
        source_turn=turn,
        added_in=1,
    )

    services.conversation_delete(conversation=conversation)

    assert not selectors.conversations_for(alice).exists()
    assert DatasetItem.objects.get(dataset=dataset).source_turn_id == turn.pk


@pytest.mark.django_db
def test_it_deletes_a_conversation_nobody_else_relies_on(alice) -> None:
    conversation = services.conversation_create(owner=alice)
    turn = _answered(conversation, "Hello?")

    services.conversation_delete(conversation=conversation)

    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert not Turn.objects.filter(pk=turn.pk).exists()
