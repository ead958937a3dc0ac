"""Alice in a real browser asks for a number: the agent's SQL call appears above the answer as it
happens, with the query and its result table behind a click, and the answer cites it."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, expect

from chatbot.agent.tools.access import tools_ensure
from chatbot.models import ModelEndpoint, ToolSetting
from tests.browser.conftest import SCREENSHOTS
from tests.browser.test_chat_browser import _collect_errors, _log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

QUERY = "SELECT count(*) FROM tickets WHERE status = 'open' AND product = 'billing'"


def test_it_renders_a_tool_call_in_the_chat(
    browser_context: BrowserContext, alice: User, fake_endpoint, reporting_db: str
) -> None:
    tools_ensure()
    ToolSetting.objects.filter(name="sql").update(enabled=True, roles=["agent"])
    endpoint = fake_endpoint(
        ["There are **25** open billing tickets [1]."],
        sleep=0.02,
        tool_calling=ModelEndpoint.ToolCalling.NATIVE,
    )
    endpoint.options["tool_calls"] = [[{"name": "sql", "args": {"query": QUERY}}]]
    endpoint.save()
    page = browser_context.new_page()
    errors = _collect_errors(page)
    _log_in(page, "alice")

    page.get_by_role("button", name="New conversation", exact=True).click()
    expect(page.locator('#chat[data-socket="open"]')).to_be_attached()
    question = page.get_by_label("Your question")
    question.fill("How many open tickets are there for billing?")
    question.press("Enter")

    answer = page.locator("#thread .msg-assistant.status-done")
    expect(answer.locator("strong")).to_have_text("25")
    call = answer.locator("details.tool-call.status-done")
    expect(call).to_have_count(1)
    expect(call.locator(".tool-label")).to_have_text("Reporting SQL")
    expect(call.locator(".tool-summary")).to_contain_text("count = 25")
    call.locator("summary").click()
    expect(call.locator(".tool-sql")).to_contain_text("FROM tickets")
    expect(call.locator(".tool-table td")).to_have_text("25")
    # The citation [1] leads to the tool call's block.
    expect(answer.locator('.markdown a[href^="#tool-"]')).to_have_text("[1]")
    page.screenshot(path=str(SCREENSHOTS / "chat_tool_call.png"), full_page=True)

    page.reload()
    expect(page.locator("#thread details.tool-call.status-done")).to_have_count(1)
    assert errors == []
