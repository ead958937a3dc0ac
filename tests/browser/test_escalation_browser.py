"""A person hands an answer over to a human and sees the human's reply arrive in their open
conversation, while a reviewer claims, answers and resolves it in the inbox: two real browsers."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, expect

from chatbot.models import Escalation
from tests.browser.conftest import SCREENSHOTS
from tests.browser.test_chat_browser import _collect_errors, _log_in
from tests.evaluation.judging import finished_turn

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_humans_reply_reaches_the_open_conversation(
    browser_context: BrowserContext, live_server_url: str, alice: User, rita: User
) -> None:
    turn = finished_turn(
        alice,
        question="Why was I charged twice this month?",
        answer="I couldn't find this in the knowledge base.",
    )
    asker = browser_context.new_page()
    errors = _collect_errors(asker)
    _log_in(asker, "alice")
    asker.goto(f"/chat/{turn.conversation_id}/")
    asker.get_by_text("Needs a human").click()
    asker.get_by_label("What should a colleague know? (optional)").fill("Customer is waiting")
    asker.get_by_role("button", name="Hand over to a human").click()
    expect(asker.get_by_text("waiting for a colleague to pick it up")).to_be_visible()
    escalation = Escalation.objects.get(turn=turn)

    assert browser_context.browser is not None
    other = browser_context.browser.new_context(base_url=live_server_url)
    try:
        reviewer = other.new_page()
        reviewer_errors = _collect_errors(reviewer)
        _log_in(reviewer, "rita")
        reviewer.goto("/review/escalations/")
        expect(reviewer.get_by_text("Customer is waiting")).to_be_visible()
        reviewer.screenshot(path=str(SCREENSHOTS / "escalations_inbox.png"), full_page=True)
        reviewer.get_by_role("link", name=re.compile("Why was I charged twice")).click()
        reviewer.get_by_role("button", name="Claim").click()
        expect(reviewer.get_by_text("You claimed this escalation.")).to_be_visible()
        # The asker's page follows without a reload.
        expect(asker.get_by_text("Rita Reviewer is on it.")).to_be_visible()

        reviewer.get_by_label(re.compile("Your reply appears in their conversation")).fill(
            "We refunded the second charge today.\nIt shows on your statement in 3 days."
        )
        reviewer.get_by_role("button", name="Send the reply").click()
        expect(reviewer.get_by_text("Your reply is in the person's conversation.")).to_be_visible()
        reviewer.screenshot(path=str(SCREENSHOTS / "escalation_page.png"), full_page=True)

        reply = asker.locator(f"#escalate-{turn.pk} .human-reply")
        expect(reply).to_contain_text("We refunded the second charge today.")
        expect(reply).to_contain_text("Rita Reviewer")
        asker.screenshot(path=str(SCREENSHOTS / "escalation_reply_in_chat.png"), full_page=True)

        reviewer.get_by_role("button", name="Resolve").click()
        expect(reviewer.get_by_text("The escalation is resolved.")).to_be_visible()
        expect(asker.get_by_text("resolved.", exact=False)).to_be_visible()
        escalation.refresh_from_db()
        assert escalation.status == Escalation.Status.RESOLVED
        assert reviewer_errors == []
    finally:
        other.close()
    assert errors == []
