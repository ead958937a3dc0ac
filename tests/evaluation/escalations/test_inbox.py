"""The escalation inbox: claim, reply, release, resolve, and the reply kept as a dataset item."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client

from chatbot.chat import selectors as chat_selectors
from chatbot.chat import services
from chatbot.models import Dataset, DatasetItem, Escalation
from evaluation.datasets import services as dataset_services
from tests.evaluation.judging import finished_turn

pytestmark = pytest.mark.django_db


@pytest.fixture
def escalation(alice: User) -> Escalation:
    turn = finished_turn(alice, question="Why was I charged twice this month?")
    return services.escalation_create(turn=turn, user=alice, reason="Billing is urgent")


def test_it_lists_what_waits_for_a_human_oldest_first(
    client_as: Callable[[User], Client], rita: User, alice: User, escalation: Escalation
) -> None:
    later = services.escalation_create(
        turn=finished_turn(alice, question="Can I get a second monitor?"), user=alice
    )
    page = client_as(rita).get("/review/escalations/")
    assert page.status_code == 200
    text = page.content.decode()
    assert text.index("Why was I charged twice") < text.index("Can I get a second monitor")
    assert "Billing is urgent" in text and "2 open" in text

    services.escalation_resolve(escalation=later, user=rita)
    waiting = client_as(rita).get("/review/escalations/").content.decode()
    assert "second monitor" not in waiting
    resolved = client_as(rita).get("/review/escalations/?show=resolved").content.decode()
    assert "second monitor" in resolved and "charged twice" not in resolved
    # A filter the inbox does not know falls back to what is waiting.
    assert "charged twice" in client_as(rita).get("/review/escalations/?show=x").content.decode()


def test_it_refuses_people_who_do_not_review(
    client_as: Callable[[User], Client], alice: User, nora: User, escalation: Escalation
) -> None:
    for user in (alice, nora):
        client = client_as(user)
        assert client.get("/review/escalations/").status_code == 403
        assert client.get(f"/review/escalations/{escalation.pk}/").status_code == 403
        refused = client.post(
            f"/review/escalations/{escalation.pk}/", {"action": "answer", "answer": "Hi"}
        )
        assert refused.status_code == 403
    escalation.refresh_from_db()
    assert escalation.status == Escalation.Status.OPEN and not escalation.answer
    anonymous = Client().get("/review/escalations/")
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]


def test_it_claims_replies_and_resolves_from_the_page(
    client_as: Callable[[User], Client], rita: User, escalation: Escalation
) -> None:
    client = client_as(rita)
    url = f"/review/escalations/{escalation.pk}/"
    assert client.get(url).status_code == 200

    assert client.post(url, {"action": "claim"}).status_code == 302
    escalation.refresh_from_db()
    assert escalation.status == "claimed" and escalation.claimed_by == rita

    sent = client.post(url, {"action": "answer", "answer": "  Refunded the second charge.  "})
    assert sent.status_code == 302
    escalation.refresh_from_db()
    assert escalation.status == "answered" and escalation.answer == "Refunded the second charge."
    assert escalation.answered_by == rita and escalation.answered_at is not None

    empty = client.post(url, {"action": "answer", "answer": "   "})
    assert empty.status_code == 400 and "Write a reply first" in empty.content.decode()
    unknown = client.post(url, {"action": "delete"})
    assert unknown.status_code == 400 and "Unknown action" in unknown.content.decode()

    assert client.post(url, {"action": "resolve"}).status_code == 302
    escalation.refresh_from_db()
    assert escalation.status == "resolved" and escalation.resolved_by == rita
    late = client.post(url, {"action": "answer", "answer": "One more thing"})
    assert late.status_code == 400 and "already resolved" in late.content.decode()
    assert client.get("/review/escalations/404404/").status_code == 404


def test_it_keeps_a_claim_to_its_claimer_until_released(
    rita: User, adam: User, escalation: Escalation
) -> None:
    services.escalation_claim(escalation=escalation, user=rita)
    services.escalation_claim(escalation=escalation, user=rita)  # again: nothing changes
    with pytest.raises(services.InvalidInput, match="Rita Reviewer has already claimed"):
        services.escalation_claim(escalation=escalation, user=adam)
    with pytest.raises(services.InvalidInput, match="has claimed this escalation"):
        services.escalation_answer(escalation=escalation, user=adam, text="Me too")

    other_reviewer = User.objects.create_user("rob")
    other_reviewer.groups.set(rita.groups.all())
    with pytest.raises(services.InvalidInput, match="Only Rita Reviewer or an admin"):
        services.escalation_release(escalation=escalation, user=other_reviewer)
    # An admin may release anyone's claim; then anyone may answer (which claims it).
    released = services.escalation_release(escalation=escalation, user=adam)
    assert released.status == "open" and released.claimed_by is None
    answered = services.escalation_answer(escalation=escalation, user=adam, text="Done.")
    assert answered.claimed_by == adam and answered.status == "answered"
    assert chat_selectors.escalation_counts() == {
        "open": 0, "claimed": 0, "answered": 1, "resolved": 0, "waiting": 1,
    }  # fmt: skip


def test_it_refuses_a_reply_that_is_too_long(rita: User, escalation: Escalation) -> None:
    with pytest.raises(services.InvalidInput, match="too long"):
        services.escalation_answer(escalation=escalation, user=rita, text="x" * 8001)


def test_it_makes_the_reply_a_dataset_item_once(
    client_as: Callable[[User], Client], rita: User, escalation: Escalation
) -> None:
    client = client_as(rita)
    url = f"/review/datasets/from-escalation/{escalation.pk}/"
    early = client.post(url, {"new_dataset": "Billing"})
    assert early.status_code == 400 and "Reply to the escalation first" in early.content.decode()

    services.escalation_answer(escalation=escalation, user=rita, text="We refunded it.")
    page = f"/review/escalations/{escalation.pk}/"
    assert "Make it a test case" in client.get(page).content.decode()
    for _ in range(2):
        added = client.post(url, {"new_dataset": "Billing", "next": page})
        assert added.status_code == 302 and added["Location"] == page
    item = DatasetItem.objects.get()
    assert item.dataset.name == "Billing" and item.source_escalation == escalation
    assert item.question == "Why was I charged twice this month?"
    assert item.expected_answer == "We refunded it." and item.answers == ["We refunded it."]
    assert item.metadata["answered_by"] == "rita" and item.source_turn_id == escalation.turn_id
    assert "Already in Billing" in client.get(page).content.decode()
    assert client_as(rita).post("/review/datasets/from-escalation/404404/").status_code == 404


def test_the_dataset_service_refuses_an_unanswered_escalation(escalation: Escalation) -> None:
    dataset = Dataset.objects.create(name="Empty")
    with pytest.raises(dataset_services.InvalidDataset):
        dataset_services.dataset_item_from_escalation(escalation=escalation, dataset=dataset)


def test_the_dashboard_and_the_trace_show_the_escalation(
    client_as: Callable[[User], Client], rita: User, adam: User, escalation: Escalation
) -> None:
    services.escalation_answer(escalation=escalation, user=rita, text="Refunded.")
    board = client_as(adam).get("/dashboard/").content.decode()
    assert "1 waiting for a human" in board and "/review/escalations/" in board
    trace = client_as(rita).get(f"/dashboard/turns/{escalation.turn_id}/").content.decode()
    assert "Answered" in trace and f"/review/escalations/{escalation.pk}/" in trace


def test_the_asker_sees_the_reply_when_they_open_the_conversation(
    client_as: Callable[[User], Client], alice: User, rita: User, escalation: Escalation
) -> None:
    url = f"/chat/{escalation.turn.conversation_id}/"
    assert "waiting for a colleague" in client_as(alice).get(url).content.decode()
    services.escalation_answer(escalation=escalation, user=rita, text="We refunded <it>.")
    page = client_as(alice).get(url).content.decode()
    assert "Rita Reviewer replied" in page and "We refunded &lt;it&gt;." in page
