"""Bad questions are refused with a message a person understands, and nothing is saved."""

from __future__ import annotations

import json

import pytest
from django.test import Client, override_settings

from chatbot.chat import services
from chatbot.models import Turn
from tests.api.conftest import bearer

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"message": "   "}, 400, "The message is empty. Type a question first."),
        ({"message": "x" * 11}, 400, "The message is too long (11 characters); the limit is 10."),
        ({}, 422, "'message' is required."),
        ({"message": 42}, 422, "'message' must be text."),
        ({"message": "Hi", "stream": "maybe"}, 422, "'stream' must be true or false."),
        ({"message": "Hi", "model": ["a"]}, 422, "'model' must be text."),
        (
            "{broken",
            400,
            'The request body is not a valid JSON object. Send e.g. {"message": "..."}.',
        ),
        (
            '"just text"',
            400,
            'The request body is not a valid JSON object. Send e.g. {"message": "..."}.',
        ),
    ],
    ids=["empty", "too-long", "missing", "number", "stream-word", "model-list", "broken", "string"],
)
@override_settings(CHAT_MAX_MESSAGE_CHARS=10)
def test_it_refuses_a_bad_message_and_saves_nothing(body, status, detail, alice, key_for) -> None:
    conversation = services.conversation_create(owner=alice)
    data = body if isinstance(body, str) else json.dumps(body)

    response = Client(headers=bearer(key_for(alice))).post(
        f"/api/conversations/{conversation.pk}/messages",
        data=data,
        content_type="application/json",
    )

    assert response.status_code == status
    assert response.json()["detail"] == detail
    assert not Turn.objects.exists()


def test_it_names_every_bad_field(alice, client_as) -> None:
    conversation = services.conversation_create(owner=alice)

    response = client_as(alice).post(
        f"/api/conversations/{conversation.pk}/messages",
        data={"message": 1, "stream": "maybe"},
        content_type="application/json",
    )

    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "message", "message": "'message' must be text."},
        {"field": "stream", "message": "'stream' must be true or false."},
    ]
