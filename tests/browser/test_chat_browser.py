"""Alice in a real browser: sign in, ask, watch the answer stream in, stop one, rate one."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, Page, expect

from chatbot.models import Feedback, Turn
from tests.browser.conftest import SCREENSHOTS
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ANSWER = "Open **Settings → Security** and choose *Reset password*; the link lasts 30 minutes."
STREAMING_TEXT = "#thread .streaming-text"
# Records the streaming bubble's text length at every DOM change, so growth is checked without
# racing the stream.
WATCH_STREAMING = """selector => {
  window.streamedLengths = [];
  new MutationObserver(() => {
    const el = document.querySelector(selector);
    if (el) window.streamedLengths.push(el.textContent.length);
  }).observe(document.getElementById('thread'), {childList: true, subtree: true, characterData: true});
}"""


def _log_in(page: Page, username: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def _collect_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    return errors


def test_it_streams_an_answer_and_stores_a_thumbs_up(
    browser_context: BrowserContext, alice: User, fake_endpoint
) -> None:
    fake_endpoint([ANSWER], sleep=0.05)
    page = browser_context.new_page()
    errors = _collect_errors(page)

    page.goto("/accounts/login/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    # caret="initial": hiding the caret injects a <style>, which the page's CSP reports.
    page.screenshot(caret="initial", path=str(SCREENSHOTS / "login.png"))
    _log_in(page, "alice")
    expect(page).to_have_url(re.compile(r"/chat/$"))
    expect(page.get_by_text("No conversations yet")).to_be_visible()
    page.screenshot(caret="initial", path=str(SCREENSHOTS / "chat_index.png"))

    page.get_by_role("button", name="New conversation", exact=True).click()
    expect(page.locator('#chat[data-socket="open"]')).to_be_attached()
    page.evaluate(WATCH_STREAMING, STREAMING_TEXT)
    question = page.get_by_label("Your question")
    question.fill("How do I reset a customer's password?")
    question.press("Enter")

    # The answer grows while it is written, and the Stop button shows meanwhile.
    page.wait_for_function(
        "s => (document.querySelector(s)?.textContent || '').length > 3", arg=STREAMING_TEXT
    )
    expect(page.locator("#stop-form")).to_be_visible()
    expect(question).to_have_value("")
    page.screenshot(caret="initial", path=str(SCREENSHOTS / "chat_streaming.png"))

    answer = page.locator("#thread .msg-assistant.status-done")
    expect(answer.locator("strong")).to_have_text("Settings → Security")
    expect(page.locator("#stop-form")).to_be_hidden()
    seen = sorted(set(page.evaluate("window.streamedLengths")) - {0})
    assert len(seen) >= 3 and seen[-1] <= len(ANSWER), f"text appeared progressively: {seen}"
    expect(page.locator("#conversation-title")).to_have_text(
        "How do I reset a customer's password?"
    )
    page.screenshot(caret="initial", path=str(SCREENSHOTS / "chat.png"))

    answer.get_by_role("button", name="Helpful", exact=True).click()
    expect(answer.get_by_text("Saved: thumbs up")).to_be_visible()
    expect(answer.get_by_role("button", name="Helpful", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )
    page.screenshot(caret="initial", path=str(SCREENSHOTS / "chat_feedback.png"))
    page.set_viewport_size({"width": 420, "height": 860})
    page.screenshot(caret="initial", path=str(SCREENSHOTS / "chat_narrow.png"), full_page=True)
    turn = Turn.objects.get(conversation__owner=alice)
    assert turn.status == Turn.Status.DONE and turn.answer == ANSWER
    feedback = Feedback.objects.get(turn=turn)
    assert feedback.user == alice and feedback.rating == Feedback.Rating.UP
    assert not errors, errors


def test_it_stops_an_answer_from_the_stop_button(
    browser_context: BrowserContext, alice: User, fake_endpoint
) -> None:
    fake_endpoint(["slowly " * 80], sleep=0.05)
    page = browser_context.new_page()
    _log_in(page, "alice")
    page.get_by_role("button", name="New conversation", exact=True).click()
    expect(page.locator('#chat[data-socket="open"]')).to_be_attached()
    page.get_by_label("Your question").fill("Tell me everything")
    page.get_by_role("button", name="Send").click()
    page.wait_for_function(
        "s => (document.querySelector(s)?.textContent || '').length > 10", arg=STREAMING_TEXT
    )

    page.get_by_role("button", name="Stop").click()

    expect(page.locator("#thread .msg-assistant .badge")).to_have_text("Stopped")
    expect(page.locator("#stop-form")).to_be_hidden()
    turn = Turn.objects.get(conversation__owner=alice)
    assert turn.status == Turn.Status.CANCELLED and turn.answer.startswith("slowly")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_text("Deleted the conversation")).to_be_visible()
    assert not Turn.objects.filter(pk=turn.pk).exists()


def test_it_shows_nora_the_no_access_page(browser_context: BrowserContext, nora: User) -> None:
    page = browser_context.new_page()
    _log_in(page, "nora")
    expect(page.get_by_role("heading", name="You don’t have access yet")).to_be_visible()
    expect(page.get_by_role("button", name="Log out and use another account")).to_be_visible()
    page.screenshot(caret="initial", path=str(SCREENSHOTS / "no_access.png"))
    page.get_by_role("button", name="Log out and use another account").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
