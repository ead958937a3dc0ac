"""Adam opens an A/B test in a real browser: he starts the draft, reads each variant's numbers
against the control, and promotes the challenger (each confirmed in the browser's dialog)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, expect

from chatbot.chat import services as chat
from chatbot.models import ABTest, Feedback, ModelEndpoint, Turn
from evaluation.abtests.services import VariantSpec, abtest_save
from tests.browser.conftest import SCREENSHOTS
from tests.browser.test_chat_browser import _collect_errors, _log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_starts_reads_and_promotes_a_test(
    browser_context: BrowserContext, adam: User, alice: User, rita: User, fake_endpoint
) -> None:
    fake_endpoint(["From the default model."], name="hosted-big")
    challenger = fake_endpoint(["From the small model."], name="local-small", default=False)
    test = abtest_save(
        test=None,
        name="Small model",
        description="Is the small model good enough?",
        variants=[
            VariantSpec(name="Control", weight=50, is_control=True),
            VariantSpec(name="Small", weight=50, endpoint=challenger),
        ],
        user=adam,
    )
    for variant, people in ((test.variants.get(is_control=True), (alice, rita)),
                            (test.variants.get(name="Small"), (alice,))):  # fmt: skip
        for number in range(6):
            person = people[number % len(people)]
            turn = chat.turn_create(
                conversation=chat.conversation_create(owner=person), user_text="q"
            )
            Turn.objects.filter(pk=turn.pk).update(
                status=Turn.Status.DONE,
                ab_variant=variant,
                total_ms=800.0 + 40 * number,
                ttft_ms=150.0 + 10 * number,
                cost=Decimal("0.0010") if variant.is_control else Decimal("0.0002"),
            )
            Feedback.objects.create(turn=turn, user=person, rating=1 if number % 3 else -1)

    page = browser_context.new_page()
    errors = _collect_errors(page)
    page.on("dialog", lambda dialog: dialog.accept())
    _log_in(page, "adam")

    page.goto("/console/abtests/")
    page.get_by_role("link", name="Small model").click()
    page.get_by_role("button", name="Start").click()
    expect(page.locator(".flash-success")).to_contain_text("is running")
    table = page.locator("table.abtest-results")
    expect(table).to_contain_text("Control")
    expect(table).to_contain_text("local-small")
    expect(table).to_contain_text("67% (30–90%)")
    expect(page.locator("#abtest-results .alert")).to_contain_text("Too early to call")
    page.screenshot(path=str(SCREENSHOTS / "console_abtest.png"), full_page=True)

    page.locator("tr", has_text="local-small").get_by_role("button", name="Promote").click()
    expect(page.locator(".flash-success")).to_contain_text("Promoted “Small”")
    expect(page.locator("table.abtest-results")).to_contain_text("winner")
    assert ModelEndpoint.objects.get(is_default=True) == challenger
    test.refresh_from_db()
    assert test.status == ABTest.Status.STOPPED and test.winner is not None
    assert errors == []
