"""Rita reviews from the keyboard in a real browser: take the next item, grade it with 1-5 and
j/k, open the shortcut list with ?, submit with s."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, expect

from chatbot.models import Review, ReviewItem
from tests.browser.conftest import SCREENSHOTS
from tests.browser.test_chat_browser import _collect_errors, _log_in
from tests.evaluation.judging import PASSWORD_CHUNK
from tests.evaluation.review.support import flagged_item

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_grades_and_submits_a_review_from_the_keyboard(
    browser_context: BrowserContext, alice: User, rita: User
) -> None:
    item = flagged_item(alice, answer="Click **Forgot password** [1].", context=(PASSWORD_CHUNK,))
    page = browser_context.new_page()
    errors = _collect_errors(page)
    _log_in(page, "rita")
    page.goto("/review/")
    page.screenshot(path=str(SCREENSHOTS / "review_queue.png"), full_page=True)
    page.get_by_role("button", name="Take next").click()
    expect(page).to_have_url(re.compile(rf"/review/items/{item.pk}/$"))
    # The URL changes before the page's deferred script has set up its keys (on
    # DOMContentLoaded): a key pressed in between was lost (a fresh-clone CI run).
    page.wait_for_load_state("load")

    page.keyboard.press("?")
    expect(page.locator("#review-shortcuts")).to_have_attribute("open", "")
    page.locator("#rubric-accuracy input").first.focus()
    for key in "45355":  # accuracy 4, then each keypress moves to the next row
        page.keyboard.press(key)
    page.keyboard.press("k")
    page.keyboard.press("4")  # back up from safety to tone and change its 5 to 4
    expect(page.locator('#rubric-tone input[value="4"]')).to_be_checked()
    expect(page.locator('#rubric-safety input[value="5"]')).to_be_checked()
    page.get_by_label("Corrected answer").fill("Use the Forgot password link on the sign-in page.")
    page.get_by_label("Hallucination").check()
    page.screenshot(path=str(SCREENSHOTS / "review_item.png"), full_page=True)
    page.keyboard.press("Escape")  # leave the text box so the shortcut keys work again
    page.locator("body").press("s")

    expect(page.get_by_text("Review saved.")).to_be_visible()
    review = Review.objects.get(item=item)
    assert review.grades == {
        "accuracy": 4, "completeness": 5, "relevance": 3, "tone": 4, "safety": 5,
    }  # fmt: skip
    assert review.causes == ["hallucination"]
    assert ReviewItem.objects.get(pk=item.pk).status == ReviewItem.Status.DONE
    assert errors == []
