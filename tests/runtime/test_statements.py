"""Statements compiled once per process (chatbot.runtime.statements): the same rows as the ORM
builds each time, for any values bound in place of the stand-ins."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from chatbot.agent.prepare import prompt_for_turn, turn_asker
from chatbot.chat import services
from chatbot.models import Turn
from chatbot.runtime.statements import STAND_IN_IDS, Statement

pytestmark = pytest.mark.django_db


def test_a_statement_gives_the_orms_rows_for_each_value_bound() -> None:
    people = [User.objects.create_user(f"p{n}", is_active=n != 1) for n in range(3)]
    active = Statement(
        lambda user: User.objects.filter(pk=user, is_active=True).values_list("username"),
        user=STAND_IN_IDS[0],
    )
    for person in people:
        expected = list(User.objects.filter(pk=person.pk, is_active=True).values_list("username"))
        assert active.rows(user=person.pk) == expected
    as_objects = Statement(lambda user: User.objects.filter(pk=user), user=STAND_IN_IDS[0])
    assert [u.username for u in as_objects.objects(User, user=people[2].pk)] == ["p2"]


def test_a_stand_in_the_sql_does_not_bind_is_refused() -> None:
    unbound = Statement(lambda user: User.objects.filter(is_active=True), user=STAND_IN_IDS[0])
    with pytest.raises(RuntimeError, match="does not bind"):
        unbound.rows(user=1)


def test_the_turns_asker_and_prompt_read_through_compiled_statements() -> None:
    owner = User.objects.create_user("asker")
    conversation = services.conversation_create(owner=owner)
    first = services.turn_create(conversation=conversation, user_text="What is the refund window?")
    Turn.objects.filter(pk=first.pk).update(status=Turn.Status.DONE, answer="30 days.")
    second = services.turn_create(conversation=conversation, user_text="And for gifts?")

    asker, is_replay = turn_asker(second.pk)
    assert (asker.pk, is_replay) == (owner.pk, False)
    prompt = prompt_for_turn(second.pk)
    assert [(m.role, m.content) for m in prompt.messages[1:]] == [
        ("user", "What is the refund window?"),
        ("assistant", "30 days."),
        ("user", "And for gifts?"),
    ]
    with pytest.raises(Turn.DoesNotExist):
        turn_asker(second.pk + 1000)
