from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from chatbot.agent.prepare import prompt_for_turn
from chatbot.chat import selectors, services
from chatbot.models import Conversation, Feedback, Turn


@pytest.mark.django_db
class TestTurnCreate:
    def test_it_saves_the_question_and_titles_the_conversation(self, alice) -> None:
        conversation = services.conversation_create(owner=alice)
        turn = services.turn_create(
            conversation=conversation, user_text="  How do I reset a password?  "
        )
        assert turn.status == Turn.Status.PENDING
        assert turn.user_text == "How do I reset a password?"
        conversation.refresh_from_db()
        assert conversation.title == "How do I reset a password?"

    def test_it_refuses_an_empty_message(self, alice) -> None:
        conversation = services.conversation_create(owner=alice)
        with pytest.raises(services.InvalidInput, match="empty"):
            services.turn_create(conversation=conversation, user_text="   ")
        assert not Turn.objects.exists()

    @override_settings(CHAT_MAX_MESSAGE_CHARS=10)
    def test_it_refuses_a_message_over_the_limit(self, alice) -> None:
        conversation = services.conversation_create(owner=alice)
        with pytest.raises(services.InvalidInput, match="too long"):
            services.turn_create(conversation=conversation, user_text="x" * 11)


@pytest.mark.django_db
def test_it_hides_another_users_conversation(alice, rita) -> None:
    conversation = services.conversation_create(owner=alice)
    with pytest.raises(Conversation.DoesNotExist):
        selectors.conversation_get_for(rita, conversation.pk)
    with pytest.raises(Conversation.DoesNotExist):
        selectors.conversation_get_for(alice, "not-a-number")
    assert selectors.conversation_get_for(alice, conversation.pk) == conversation


@pytest.mark.django_db
def test_it_builds_the_prompt_from_recent_finished_turns(alice) -> None:
    conversation = services.conversation_create(owner=alice)
    first = services.turn_create(conversation=conversation, user_text="first question")
    Turn.objects.filter(pk=first.pk).update(status=Turn.Status.DONE, answer="first answer")
    failed = services.turn_create(conversation=conversation, user_text="failed question")
    Turn.objects.filter(pk=failed.pk).update(status=Turn.Status.FAILED)
    current = services.turn_create(conversation=conversation, user_text="second question")

    prompt = prompt_for_turn(current.pk)

    assert [(m.role, m.content) for m in prompt.messages[1:]] == [
        ("user", "first question"),
        ("assistant", "first answer"),
        ("user", "second question"),
    ]
    assert prompt.messages[0].role == "system"


@pytest.mark.django_db
class TestFeedback:
    def _done_turn(self, user) -> Turn:
        conversation = services.conversation_create(owner=user)
        turn = services.turn_create(conversation=conversation, user_text="q")
        Turn.objects.filter(pk=turn.pk).update(status=Turn.Status.DONE, answer="a")
        turn.refresh_from_db()
        return turn

    def test_it_stores_one_rating_per_person_and_updates_it(self, alice) -> None:
        turn = self._done_turn(alice)
        services.feedback_set(turn=turn, user=alice, rating=1)
        services.feedback_set(turn=turn, user=alice, rating="-1", comment="wrong link")
        feedback = Feedback.objects.get()
        assert feedback.rating == -1 and feedback.comment == "wrong link"

    @pytest.mark.parametrize("rating", [0, 2, "up", None])
    def test_it_refuses_a_bad_rating(self, alice, rating) -> None:
        turn = self._done_turn(alice)
        with pytest.raises(services.InvalidInput):
            services.feedback_set(turn=turn, user=alice, rating=rating)


@pytest.mark.django_db
def test_it_closes_turns_left_streaming_by_a_dead_process(alice) -> None:
    conversation = services.conversation_create(owner=alice)
    stale = services.turn_create(conversation=conversation, user_text="old")
    fresh = services.turn_create(conversation=conversation, user_text="new")
    Turn.objects.filter(pk=stale.pk).update(
        status=Turn.Status.STREAMING, created_at=timezone.now() - timedelta(hours=1)
    )
    assert services.turns_expire_stale() == 1
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.status == Turn.Status.FAILED and "interrupted" in stale.error
    assert fresh.status == Turn.Status.PENDING
