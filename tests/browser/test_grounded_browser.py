"""Alice in a real browser gets a cited answer from the knowledge base, opens its passage, and
hands an unanswerable question over to a human."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, expect

from chatbot.models import AssistantSettings, Escalation, Turn
from tests.browser.conftest import SCREENSHOTS
from tests.browser.test_chat_browser import _collect_errors, _log_in
from tests.knowledge.test_search import make_knowledge_base

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ANSWER = "Open the sign-in page and click **Forgot password** [1]. The link expires after 30 minutes [1]."


def test_it_cites_its_sources_and_offers_a_human_when_it_does_not_know(
    browser_context: BrowserContext, alice: User, fake_endpoint
) -> None:
    make_knowledge_base()
    AssistantSettings.objects.create(pk=1, grounding="required", retrieval_k=3, min_similarity=0.3)
    fake_endpoint([ANSWER], sleep=0.005)
    page = browser_context.new_page()
    errors = _collect_errors(page)
    _log_in(page, "alice")
    expect(page).to_have_url(re.compile(r"/chat/$"))
    page.get_by_role("button", name="New conversation", exact=True).click()
    expect(page.locator('#chat[data-socket="open"]')).to_be_attached()

    question = page.get_by_label("Your question")
    question.fill("How do I reset a forgotten password?")
    question.press("Enter")
    answer = page.locator("#thread .msg-assistant.status-done").first
    # The first question also loads the embedding model in the server process: allow for it.
    expect(answer.locator(".source-chip")).to_have_text(
        re.compile(r"\[1\] Reset a password"), timeout=30_000
    )
    expect(answer.locator(".markdown a").first).to_have_text("[1]")
    panel = page.locator("#sources-panel")
    expect(panel.get_by_text("Passages given to the answer")).to_be_visible()
    expect(panel.locator(".source-item.cited")).to_have_count(1)
    page.screenshot(path=str(SCREENSHOTS / "chat_grounded.png"))

    question.fill("What is the capital of Mongolia?")
    question.press("Enter")
    refusal = page.locator("#thread .msg-assistant.status-done").nth(1)
    expect(refusal.get_by_text("Not in the knowledge base")).to_be_visible()
    expect(refusal.get_by_text("I couldn't find this in the knowledge base")).to_be_visible()
    refusal.locator("summary", has_text="Needs a human").click()
    refusal.get_by_label("What should a colleague know?").fill("Customer on the phone")
    refusal.get_by_role("button", name="Hand over to a human").click()
    expect(refusal.get_by_text("Escalated")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "chat_escalated.png"))

    with page.expect_navigation():
        answer.locator(".source-chip").first.click()
    expect(page.get_by_role("heading", name="Reset a password")).to_be_visible()
    expect(page.locator(".chunk:target, .chunk").first).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "knowledge_document.png"))

    refused = Turn.objects.get(user_text="What is the capital of Mongolia?")
    assert refused.no_answer and refused.endpoint is None
    assert Escalation.objects.get(turn=refused).reason == "Customer on the phone"
    assert not errors, errors
