"""Conversations, turns and feedback through /api/, by session and by API key."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from chatbot.chat import services
from chatbot.models import Conversation, Escalation, Feedback, Turn
from tests.api.conftest import bearer, finished_turn

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_by_key(alice, key_for) -> Client:
    return Client(headers=bearer(key_for(alice)))


def _post(client: Client, url: str, body: object):
    return client.post(url, data=json.dumps(body), content_type="application/json")


@pytest.mark.parametrize("auth", ["session", "key"])
def test_it_creates_reads_and_deletes_a_conversation(auth, alice, client_as, key_for) -> None:
    client = client_as(alice) if auth == "session" else Client(headers=bearer(key_for(alice)))

    created = _post(client, "/api/conversations", {"title": "  VPN trouble "})
    assert created.status_code == 201
    conversation = created.json()
    assert conversation["title"] == "VPN trouble"
    assert conversation["channel"] == "web"

    read = client.get(f"/api/conversations/{conversation['id']}")
    assert read.status_code == 200
    assert read.json()["turns"] == []

    deleted = client.delete(f"/api/conversations/{conversation['id']}")
    assert deleted.status_code == 204
    assert not Conversation.objects.filter(pk=conversation["id"]).exists()
    assert client.get(f"/api/conversations/{conversation['id']}").status_code == 404


def test_it_creates_a_conversation_without_a_title(alice_by_key) -> None:
    response = _post(alice_by_key, "/api/conversations", {})
    no_body = alice_by_key.post("/api/conversations", data=b"", content_type="application/json")

    assert response.status_code == 201
    assert response.json()["title"] == ""
    assert no_body.status_code == 422
    assert no_body.json()["detail"] == "The request body is missing or not an object."


def test_it_lists_only_the_callers_conversations_newest_first_by_page(
    alice, rita, client_as, django_assert_max_num_queries
) -> None:
    for n in range(25):
        services.conversation_create(owner=alice, title=f"Question {n}")
    services.conversation_create(owner=rita, title="Rita's")
    client = client_as(alice)

    # session, user, 2 for permissions, count, one page: the same for any number of rows
    with django_assert_max_num_queries(6):
        first = client.get("/api/conversations")
    second = client.get("/api/conversations?page=2")

    assert first.status_code == 200
    assert first.json()["count"] == 25
    titles = [c["title"] for c in first.json()["items"]]
    assert titles == [f"Question {n}" for n in range(24, 4, -1)]
    assert [c["title"] for c in second.json()["items"]] == [
        f"Question {n}" for n in range(4, -1, -1)
    ]
    page_of_five = client.get("/api/conversations?page_size=5").json()
    assert len(page_of_five["items"]) == 5


def test_it_bounds_the_page_number(
    alice, alice_by_key, settings, django_assert_max_num_queries
) -> None:
    for n in range(3):
        services.conversation_create(owner=alice, title=f"Question {n}")

    with django_assert_max_num_queries(5) as run:
        past_the_end = alice_by_key.get("/api/conversations?page=2")
    at_most = alice_by_key.get(f"/api/conversations?page={settings.API_MAX_PAGE}")
    too_far = alice_by_key.get(f"/api/conversations?page={settings.API_MAX_PAGE + 1}")
    huge = alice_by_key.get(f"/api/conversations?page={10**30}")

    assert past_the_end.status_code == 200
    assert past_the_end.json() == {"items": [], "count": 3}
    assert not any("OFFSET" in q["sql"] for q in run.captured_queries), "no rows are walked"
    assert at_most.status_code == 200 and at_most.json()["items"] == []
    for refused in (too_far, huge):
        assert refused.status_code == 422
        assert refused.json()["detail"] == (
            f"'page' should be less than or equal to {settings.API_MAX_PAGE}."
        )


def test_it_reads_a_conversation_with_its_turns_and_the_callers_feedback(
    alice, fake_endpoint, client_as, django_assert_max_num_queries
) -> None:
    endpoint = fake_endpoint()
    conversation = services.conversation_create(owner=alice)
    turns = [finished_turn(conversation, text=f"Question {n}") for n in range(5)]
    Turn.objects.filter(conversation=conversation).update(endpoint=endpoint)
    services.feedback_set(turn=turns[0], user=alice, rating=-1, comment="Too vague")
    client = client_as(alice)

    # session, user, 2 for permissions, conversation, turns with endpoints and escalations, the
    # caller's feedback, citations with their documents, tool calls
    with django_assert_max_num_queries(9):
        response = client.get(f"/api/conversations/{conversation.pk}")

    assert response.status_code == 200
    body = response.json()
    assert body["title"] == "Question 0"
    assert [t["user_text"] for t in body["turns"]] == [f"Question {n}" for n in range(5)]
    first = body["turns"][0]
    assert first["answer"] == "Ask IT."
    assert first["status"] == "done"
    assert first["model"] == "fake-model"
    assert (first["tokens_in"], first["tokens_out"]) == (12, 5)
    assert first["cost"] == pytest.approx(0.000022)
    assert first["ttft_ms"] == 12.5 and first["total_ms"] == 40.0
    assert first["error"] == ""
    assert first["feedback"] == {"rating": -1, "comment": "Too vague"}
    assert body["turns"][1]["feedback"] is None


def test_it_hides_feedback_given_by_someone_else(alice, adam, client_as) -> None:
    conversation = services.conversation_create(owner=alice)
    turn = finished_turn(conversation)
    Feedback.objects.create(turn=turn, user=adam, rating=1)

    body = client_as(alice).get(f"/api/conversations/{conversation.pk}").json()

    assert body["turns"][0]["feedback"] is None


def test_it_answers_404_for_another_users_conversation_or_turn(alice, rita, client_as) -> None:
    conversation = services.conversation_create(owner=alice)
    turn = finished_turn(conversation)
    client = client_as(rita)

    responses = [
        client.get(f"/api/conversations/{conversation.pk}"),
        client.delete(f"/api/conversations/{conversation.pk}"),
        _post(client, f"/api/conversations/{conversation.pk}/messages", {"message": "Hi"}),
        _post(client, f"/api/turns/{turn.pk}/feedback", {"rating": 1}),
        client.get("/api/conversations/999999"),
    ]

    assert [r.status_code for r in responses] == [404] * 5
    assert responses[0].json() == {"detail": "Conversation not found."}
    assert responses[3].json() == {"detail": "Turn not found."}
    assert Conversation.objects.filter(pk=conversation.pk).exists()
    assert conversation.turns.count() == 1


def test_it_saves_and_changes_feedback(alice, alice_by_key) -> None:
    turn = finished_turn(services.conversation_create(owner=alice))

    first = _post(alice_by_key, f"/api/turns/{turn.pk}/feedback", {"rating": 1})
    second = _post(
        alice_by_key, f"/api/turns/{turn.pk}/feedback", {"rating": -1, "comment": "Wrong link"}
    )

    assert first.status_code == 200
    assert first.json() == {"turn_id": turn.pk, "rating": 1, "comment": ""}
    assert second.json() == {"turn_id": turn.pk, "rating": -1, "comment": "Wrong link"}
    assert Feedback.objects.get(turn=turn, user=alice).rating == -1


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"rating": 5}, 400, "Rating must be 1"),
        ({"rating": 0}, 400, "Rating must be 1"),
        ({"rating": "great"}, 422, "'rating' must be a whole number."),
        ({}, 422, "'rating' is required."),
        ({"rating": 1, "comment": "x" * 2001}, 400, "comment is too long"),
        ({"rating": 1, "comment": 7}, 422, "'comment' must be text."),
    ],
)
def test_it_refuses_bad_feedback_with_a_clear_message(
    body, status, words, alice, alice_by_key
) -> None:
    turn = finished_turn(services.conversation_create(owner=alice))

    response = _post(alice_by_key, f"/api/turns/{turn.pk}/feedback", body)

    assert response.status_code == status
    assert words in response.json()["detail"]
    assert not Feedback.objects.exists()


def test_it_refuses_feedback_on_an_unfinished_answer(alice, alice_by_key) -> None:
    conversation = services.conversation_create(owner=alice)
    turn = services.turn_create(conversation=conversation, user_text="Still thinking?")

    response = _post(alice_by_key, f"/api/turns/{turn.pk}/feedback", {"rating": 1})

    assert response.status_code == 400
    assert "Wait for the answer" in response.json()["detail"]


def test_it_explains_malformed_and_mistyped_requests(alice_by_key) -> None:
    malformed = alice_by_key.post(
        "/api/conversations", data="{not json", content_type="application/json"
    )
    too_long = _post(alice_by_key, "/api/conversations", {"title": "x" * 201})
    wrong_type = _post(alice_by_key, "/api/conversations", {"title": ["a list"]})
    not_an_object = _post(alice_by_key, "/api/conversations", ["a", "list"])
    bad_id = alice_by_key.get("/api/conversations/abc")
    bad_page = alice_by_key.get("/api/conversations?page=0")

    assert malformed.status_code == 400
    assert "not a valid JSON object" in malformed.json()["detail"]
    assert too_long.status_code == 422
    assert too_long.json()["detail"] == "'title' should have at most 200 characters."
    assert too_long.json()["errors"] == [
        {"field": "title", "message": "'title' should have at most 200 characters."}
    ]
    assert wrong_type.json()["detail"] == "'title' must be text."
    assert not_an_object.status_code == 400
    assert "not a valid JSON object" in not_an_object.json()["detail"]
    assert bad_id.status_code == 422
    assert bad_id.json()["detail"] == "'conversation_id' must be a whole number."
    assert bad_page.status_code == 422
    assert bad_page.json()["detail"] == "'page' should be greater than or equal to 1."


def test_it_publishes_the_openapi_schema_and_docs(client) -> None:
    schema = client.get("/api/openapi.json")
    docs = client.get("/api/docs")

    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {
        "/api/conversations",
        "/api/conversations/{conversation_id}",
        "/api/conversations/{conversation_id}/messages",
        "/api/turns/{turn_id}/feedback",
    } <= set(paths)
    assert "text/event-stream" in json.dumps(paths["/api/conversations/{conversation_id}/messages"])
    assert docs.status_code == 200


def test_it_escalates_an_answer_once_and_shows_it_on_the_turn(
    alice, rita, alice_by_key, client_as
) -> None:
    conversation = services.conversation_create(owner=alice)
    turn = finished_turn(conversation)

    first = _post(alice_by_key, f"/api/turns/{turn.pk}/escalate", {"reason": "Angry customer"})
    again = _post(alice_by_key, f"/api/turns/{turn.pk}/escalate", {})
    others = _post(client_as(rita), f"/api/turns/{turn.pk}/escalate", {})

    assert first.status_code == 200 and again.status_code == 200
    assert first.json()["status"] == "open" and again.json()["reason"] == "Angry customer"
    assert others.status_code == 404
    read = alice_by_key.get(f"/api/conversations/{conversation.pk}").json()
    assert read["turns"][0]["escalated"] is True
    assert read["turns"][0]["no_answer"] is False and read["turns"][0]["citations"] == []
    assert read["turns"][0]["escalation"]["status"] == "open"
    assert read["turns"][0]["escalation"]["answer"] == ""

    # The human's reply reaches a program as it reaches the browser.
    escalation = Escalation.objects.get(turn=turn)
    services.escalation_answer(escalation=escalation, user=rita, text="Refunded today.")
    replied = alice_by_key.get(f"/api/conversations/{conversation.pk}").json()["turns"][0]
    assert replied["escalation"]["status"] == "answered"
    assert replied["escalation"]["answer"] == "Refunded today."
    assert replied["escalation"]["answered_by"] == "Rita Reviewer"
    assert replied["escalation"]["answered_at"]


def test_it_refuses_to_escalate_an_unfinished_answer(alice, alice_by_key) -> None:
    conversation = services.conversation_create(owner=alice)
    turn = services.turn_create(conversation=conversation, user_text="Still thinking?")
    response = _post(alice_by_key, f"/api/turns/{turn.pk}/escalate", {"reason": "x"})
    assert response.status_code == 400
    assert "Wait for the answer" in response.json()["detail"]
