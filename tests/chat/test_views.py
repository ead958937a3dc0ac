from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from chatbot.chat import services
from chatbot.models import Conversation, Feedback, Turn

pytestmark = pytest.mark.django_db


def _finished_turn(conversation: Conversation, answer: str = "The link expires after 30 minutes."):
    turn = services.turn_create(conversation=conversation, user_text="How long is the link valid?")
    Turn.objects.filter(pk=turn.pk).update(status=Turn.Status.DONE, answer=answer)
    turn.refresh_from_db()
    return turn


@pytest.fixture
def conversation(alice) -> Conversation:
    return services.conversation_create(owner=alice, title="Password resets")


@pytest.fixture
def turn(conversation) -> Turn:
    return _finished_turn(conversation)


def _urls(conversation: Conversation, turn: Turn) -> dict[str, tuple[str, str]]:
    return {
        "index": ("get", reverse("chat:index")),
        "conversation": ("get", reverse("chat:conversation", args=[conversation.pk])),
        "new": ("post", reverse("chat:new")),
        "delete": ("post", reverse("chat:delete", args=[conversation.pk])),
        "feedback": ("post", reverse("chat:feedback", args=[turn.pk])),
    }


class TestAccess:
    def test_it_refuses_nora_on_every_page_and_post(self, nora, client_as, conversation, turn):
        client = client_as(nora)
        for name, (method, url) in _urls(conversation, turn).items():
            response = getattr(client, method)(url, {"rating": "1"} if method == "post" else {})
            assert response.status_code == 403, name
            assert b"no role" in response.content, name
        assert Conversation.objects.filter(pk=conversation.pk).exists()
        assert not Feedback.objects.exists()
        assert Conversation.objects.count() == 1

    def test_it_sends_anonymous_visitors_to_the_login_page(self, conversation, turn):
        client = Client()
        for name, (method, url) in _urls(conversation, turn).items():
            response = getattr(client, method)(url)
            assert response.status_code == 302, name
            assert response["Location"].startswith(reverse("login") + "?next="), name

    def test_it_hides_another_users_conversation(self, rita, client_as, conversation, turn):
        client = client_as(rita)
        assert client.get(reverse("chat:conversation", args=[conversation.pk])).status_code == 404
        assert client.post(reverse("chat:delete", args=[conversation.pk])).status_code == 404
        response = client.post(reverse("chat:feedback", args=[turn.pk]), {"rating": "1"})
        assert response.status_code == 404
        assert Conversation.objects.filter(pk=conversation.pk).exists()
        assert not Feedback.objects.exists()

    def test_it_answers_404_for_an_unknown_conversation(self, alice, client_as):
        response = client_as(alice).get(reverse("chat:conversation", args=[999999]))
        assert response.status_code == 404

    def test_it_refuses_get_on_post_only_urls(self, alice, client_as, conversation, turn):
        client = client_as(alice)
        assert client.get(reverse("chat:new")).status_code == 405
        assert client.get(reverse("chat:delete", args=[conversation.pk])).status_code == 405
        assert client.get(reverse("chat:feedback", args=[turn.pk])).status_code == 405


class TestPages:
    def test_it_redirects_home_to_chat(self, alice, client_as):
        response = client_as(alice).get(reverse("home"))
        assert response.status_code == 302
        assert response["Location"] == reverse("chat:index")

    def test_it_shows_the_empty_state_to_a_new_user(self, alice, client_as):
        response = client_as(alice).get(reverse("chat:index"))
        assert response.status_code == 200
        html = response.content.decode()
        assert "No conversations yet" in html
        assert "Support Assistant" in html
        assert 'aria-current="page"' in html, "the Chat area is marked as the current one"
        assert f"version {settings.VERSION}" in html

    def test_it_lists_only_my_conversations_newest_first(self, alice, rita, client_as):
        older = services.conversation_create(owner=alice, title="Older question")
        newer = services.conversation_create(owner=alice, title="Newer question")
        services.conversation_create(owner=rita, title="Rita's secret")
        html = client_as(alice).get(reverse("chat:index")).content.decode()
        assert "Rita&#x27;s secret" not in html and "Rita's secret" not in html
        assert html.index(newer.title) < html.index(older.title)

    def test_it_renders_the_conversation_page(self, alice, client_as, conversation, turn):
        response = client_as(alice).get(reverse("chat:conversation", args=[conversation.pk]))
        assert response.status_code == 200
        html = response.content.decode()
        assert f'ws-connect="/ws/chat/{conversation.pk}/"' in html
        assert 'hx-ext="ws"' in html and "ws-send" in html
        assert 'name="message"' in html
        assert "The link expires after 30 minutes." in html
        assert "Sources appear here when an answer uses the knowledge base" in html
        assert reverse("chat:feedback", args=[turn.pk]) in html

    def test_it_creates_a_conversation_and_opens_it(self, alice, client_as):
        response = client_as(alice).post(reverse("chat:new"))
        conversation = Conversation.objects.get(owner=alice)
        assert response.status_code == 302
        assert response["Location"] == reverse("chat:conversation", args=[conversation.pk])

    def test_it_deletes_a_conversation(self, alice, client_as, conversation, turn):
        response = client_as(alice).post(
            reverse("chat:delete", args=[conversation.pk]), follow=True
        )
        assert response.redirect_chain[-1][0] == reverse("chat:index")
        assert not Conversation.objects.filter(pk=conversation.pk).exists()
        assert "Deleted the conversation" in response.content.decode()

    def test_it_escapes_and_sanitises_model_output_and_user_text(
        self, alice, client_as, conversation
    ):
        evil = (
            "Try this <script>alert('x')</script> and <img src=x onerror=alert(1)> "
            "[click](javascript:alert(2)) **bold**"
        )
        turn = _finished_turn(conversation, answer=evil)
        Turn.objects.filter(pk=turn.pk).update(user_text="<script>alert('user')</script>")
        html = client_as(alice).get(reverse("chat:conversation", args=[conversation.pk])).content
        page = html.decode()
        assert "<script>alert" not in page
        assert "<img" not in page, "raw HTML from the model is shown as text, never as markup"
        assert "&lt;img src=x onerror=alert(1)&gt;" in page
        assert 'href="javascript:' not in page
        assert "&lt;script&gt;alert(&#x27;user&#x27;)&lt;/script&gt;" in page
        assert "<strong>bold</strong>" in page

    def test_it_renders_the_conversation_page_in_constant_queries(
        self, alice, client_as, conversation, django_assert_max_num_queries
    ):
        client = client_as(alice)
        for _ in range(5):
            turn = _finished_turn(conversation)
            services.feedback_set(turn=turn, user=alice, rating=1)
        url = reverse("chat:conversation", args=[conversation.pk])
        # session, user, permissions (user + group), sidebar, conversation, turns, feedback,
        # citations, tool calls: the same 10 whatever the number of turns.
        with django_assert_max_num_queries(10):
            assert client.get(url).status_code == 200

    def test_it_shows_a_failed_and_a_stopped_answer_plainly(self, alice, client_as, conversation):
        failed = services.turn_create(conversation=conversation, user_text="q1")
        Turn.objects.filter(pk=failed.pk).update(
            status=Turn.Status.FAILED, answer="Par", error="The model 'x' failed to answer."
        )
        stopped = services.turn_create(conversation=conversation, user_text="q2")
        Turn.objects.filter(pk=stopped.pk).update(status=Turn.Status.CANCELLED, answer="Half")
        html = client_as(alice).get(reverse("chat:conversation", args=[conversation.pk]))
        page = html.content.decode()
        assert "The model &#x27;x&#x27; failed to answer." in page
        assert "Stopped" in page and "Half" in page


class TestFeedback:
    def test_it_stores_and_updates_feedback(self, alice, client_as, turn):
        client = client_as(alice)
        url = reverse("chat:feedback", args=[turn.pk])
        response = client.post(url, {"rating": "1"}, HTTP_HX_REQUEST="true")
        assert response.status_code == 200
        assert 'aria-pressed="true"' in response.content.decode()
        assert "Saved: thumbs up" in response.content.decode()
        response = client.post(
            url, {"rating": "-1", "comment": "Missing the SSO case"}, HTTP_HX_REQUEST="true"
        )
        assert response.status_code == 200
        feedback = Feedback.objects.get(turn=turn, user=alice)
        assert feedback.rating == -1 and feedback.comment == "Missing the SSO case"
        assert "Missing the SSO case" in response.content.decode()

    def test_it_redirects_back_without_htmx(self, alice, client_as, turn):
        response = client_as(alice).post(reverse("chat:feedback", args=[turn.pk]), {"rating": "1"})
        assert response.status_code == 302
        assert response["Location"] == reverse("chat:conversation", args=[turn.conversation_id])
        assert Feedback.objects.get(turn=turn).rating == 1

    def test_it_refuses_a_bad_rating_with_a_message(self, alice, client_as, turn):
        response = client_as(alice).post(
            reverse("chat:feedback", args=[turn.pk]),
            {"rating": "5", "comment": "keep me"},
            HTTP_HX_REQUEST="true",
        )
        assert response.status_code == 400
        page = response.content.decode()
        assert "Rating must be 1 (thumbs up) or -1 (thumbs down)." in page
        assert "keep me" in page, "the comment the person typed is not lost"
        assert not Feedback.objects.exists()

    def test_it_refuses_feedback_on_an_unfinished_answer(self, alice, client_as, conversation):
        pending = services.turn_create(conversation=conversation, user_text="still going")
        response = client_as(alice).post(
            reverse("chat:feedback", args=[pending.pk]), {"rating": "1"}, HTTP_HX_REQUEST="true"
        )
        assert response.status_code == 400
        assert "Wait for the answer to finish" in response.content.decode()

    def test_it_enforces_csrf_on_feedback(self, alice, turn):
        client = Client(enforce_csrf_checks=True)
        client.force_login(alice)
        url = reverse("chat:feedback", args=[turn.pk])
        assert client.post(url, {"rating": "1"}).status_code == 403
        page = client.get(reverse("chat:conversation", args=[turn.conversation_id]))
        token = page.cookies["csrftoken"].value
        response = client.post(url, {"rating": "1"}, HTTP_HX_REQUEST="true", HTTP_X_CSRFTOKEN=token)
        assert response.status_code == 200
        assert Feedback.objects.filter(turn=turn, rating=1).exists()


class TestLoginAndNoAccess:
    def test_it_renders_the_login_page(self):
        response = Client().get(reverse("login"))
        assert response.status_code == 200
        html = response.content.decode()
        assert 'autocomplete="username"' in html and "<label" in html

    def test_it_logs_in_through_the_form(self, alice):
        from tests.conftest import PASSWORD

        response = Client().post(reverse("login"), {"username": "alice", "password": PASSWORD})
        assert response.status_code == 302

    def test_it_shows_a_polite_page_to_nora_with_logout(self, nora, client_as):
        response = client_as(nora).get(reverse("home"))
        assert response.status_code == 403
        html = response.content.decode()
        assert "Ask your team lead or an administrator" in html
        assert reverse("logout") in html
