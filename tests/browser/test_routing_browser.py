"""Adam adds a routing rule in a real browser and tries a question as Alice; Alice then asks with
an e-mail address in her question, and the answer comes from the local model, with each rule's
verdict in the turn's trace."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, expect

from chatbot.models import RoutingRule, Turn
from tests.browser.conftest import SCREENSHOTS
from tests.browser.test_chat_browser import _collect_errors, _log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

QUESTION = "Jane (jane.doe@example.com) cannot log in. How long is the reset link valid?"


def test_it_adds_a_rule_dry_runs_it_and_routes_a_turn_by_it(
    browser_context: BrowserContext, adam: User, alice: User, fake_endpoint
) -> None:
    fake_endpoint(["From the local model."], name="local-small", default=False, sleep=0.01)
    fake_endpoint(["From the hosted model."], name="hosted-big", price_output_per_mtok=15)
    RoutingRule.objects.create(
        name="Fall back",
        kind="availability",
        reason="Fall back when a model fails",
        order=1,
        options={"retries": 1, "backoff_s": 0.2, "first_token_timeout_s": 0},
    )
    page = browser_context.new_page()
    errors = _collect_errors(page)
    _log_in(page, "adam")

    page.goto("/console/routing/")
    page.get_by_role("button", name="Add a rule").click()
    page.get_by_label("Name").fill("Personal data stays local")
    page.get_by_label("Kind").select_option("sensitivity")
    page.get_by_label("Reason shown in the trace").fill("Personal data stays on our servers")
    page.get_by_label("Models, in order").fill("local-small")
    page.screenshot(path=str(SCREENSHOTS / "console_routing_rule_form.png"), full_page=True)
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash-success")).to_contain_text("Personal data stays local")
    page.get_by_role("button", name="Move “Personal data stays local” up").click()
    first = page.locator("table.striped tbody tr").first
    expect(first).to_contain_text("Personal data stays local")
    page.screenshot(path=str(SCREENSHOTS / "console_routing.png"), full_page=True)

    page.get_by_role("button", name="Try a question").click()
    page.get_by_label("Ask as").select_option(label="alice")
    page.get_by_label("Question").fill(QUESTION)
    page.get_by_role("button", name="Route it").click()
    expect(page.get_by_role("status")).to_contain_text("Goes to local-small")
    expect(page.locator("table.facts")).to_contain_text("EMAIL_ADDRESS")
    page.screenshot(path=str(SCREENSHOTS / "console_routing_dry_run.png"), full_page=True)

    browser_context.clear_cookies()
    _log_in(page, "alice")
    page.get_by_role("button", name="New conversation", exact=True).click()
    expect(page.locator('#chat[data-socket="open"]')).to_be_attached()
    page.get_by_label("Your question").fill(QUESTION)
    page.get_by_label("Your question").press("Enter")
    expect(page.locator("#thread .msg-assistant.status-done")).to_contain_text(
        "From the local model."
    )

    turn = Turn.objects.get(user_text=QUESTION)
    browser_context.clear_cookies()
    _log_in(page, "adam")
    page.goto(f"/dashboard/turns/{turn.pk}/")
    expect(page.locator(".page-header")).to_contain_text("Personal data stays on our servers")
    name = page.locator(".span-name", has_text=re.compile(r"^route$"))
    route = page.locator("li.span-row").filter(has=name)
    route.locator("summary").click()
    expect(route).to_contain_text("only local-small may receive it")
    page.screenshot(path=str(SCREENSHOTS / "trace_routing.png"), full_page=True)
    assert errors == []
