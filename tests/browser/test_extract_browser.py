"""Alice opens "Extract from texts" from the chat, pastes two texts, watches the run finish in a
real Celery worker and downloads the results as CSV. The model is the fake chat model."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable

import pytest
from celery.contrib.testing.worker import TestWorkController
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, expect

from chatbot.agent.tools.access import tools_ensure
from chatbot.models import ExtractionRun, ModelEndpoint, ToolSetting
from tests.browser.conftest import SCREENSHOTS
from tests.browser.test_chat_browser import _collect_errors, _log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FIELDS = {
    "customer_name": "Maria Lopez",
    "email": "maria@example.com",
    "product": "export",
    "sentiment": "negative",
    "wants_refund": True,
    "summary": "=The CSV export keeps failing; she wants a refund.",
}
TEXTS = (
    "Hi, Maria Lopez here (maria@example.com). The CSV export failed again, refund please.\n"
    "---\n"
    "Maria again: still broken. <b>Not bold</b>."
)


def test_it_extracts_pasted_texts_and_downloads_a_csv(
    browser_context: BrowserContext,
    alice: User,
    fake_endpoint: Callable[..., ModelEndpoint],
    worker: TestWorkController,
) -> None:
    tools_ensure()
    ToolSetting.objects.filter(name="extract").update(enabled=True, roles=["agent"])
    endpoint = fake_endpoint(["unused"], sleep=0.01)
    endpoint.options["choices"] = [json.dumps(FIELDS)]
    endpoint.save()
    page = browser_context.new_page()
    errors = _collect_errors(page)
    _log_in(page, "alice")

    expect(page.get_by_role("link", name="Extract from texts")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "extract_link.png"))
    page.get_by_role("link", name="Extract from texts").click()
    expect(page).to_have_url(re.compile(r"/chat/extract/$"))
    expect(page.get_by_text("No runs yet")).to_be_visible()
    page.get_by_label("Schema").select_option("contact_request")
    page.get_by_label("Texts").fill(TEXTS)
    page.screenshot(path=str(SCREENSHOTS / "extract_form.png"), full_page=True)
    page.get_by_role("button", name="Extract", exact=True).click()

    expect(page).to_have_url(re.compile(r"/chat/extract/\d+/$"))
    progress = page.locator("#extract-progress")
    expect(progress).to_contain_text("2 of 2 texts", timeout=30_000)
    expect(progress.locator(".badge-ok")).to_have_text("Done")
    table = progress.locator("table.extract-results")
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table).to_contain_text("Maria Lopez")
    # Texts and model output are shown as text, never as markup.
    expect(table).to_contain_text("<b>Not bold</b>")
    page.screenshot(path=str(SCREENSHOTS / "extract.png"), full_page=True)

    with page.expect_download() as downloaded:
        page.get_by_role("button", name="Download CSV").click()
    download = downloaded.value
    run = ExtractionRun.objects.get()
    assert download.suggested_filename == f"extraction-{run.pk}-contact_request.csv"
    with open(download.path(), encoding="utf-8") as handle:
        rows = list(csv.reader(io.StringIO(handle.read())))
    assert rows[0] == [*FIELDS, "text", "error"]
    assert len(rows) == 3
    assert rows[1][0] == "Maria Lopez" and rows[1][4] == "true"
    assert rows[1][5].startswith("'=The CSV export"), "a formula is defused"
    assert errors == []


def test_it_shows_an_extract_call_in_the_chat_as_a_table(
    browser_context: BrowserContext, alice: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    tools_ensure()
    ToolSetting.objects.filter(name="extract").update(enabled=True, roles=["agent"])
    endpoint = fake_endpoint(
        ["Maria Lopez wants a refund for the export [1]."],
        sleep=0.02,
        tool_calling=ModelEndpoint.ToolCalling.NATIVE,
    )
    text = TEXTS.split("---")[0].strip()
    endpoint.options["tool_calls"] = [
        [{"name": "extract", "args": {"schema": "contact_request", "text": text}}]
    ]
    endpoint.options["choices"] = [json.dumps(FIELDS)]
    endpoint.save()
    page = browser_context.new_page()
    errors = _collect_errors(page)
    _log_in(page, "alice")

    page.get_by_role("button", name="New conversation", exact=True).click()
    expect(page.locator('#chat[data-socket="open"]')).to_be_attached()
    question = page.get_by_label("Your question")
    question.fill(f"Pull out the details: {text}")
    question.press("Enter")

    answer = page.locator("#thread .msg-assistant.status-done")
    call = answer.locator("details.tool-call.status-done")
    expect(call).to_have_count(1)
    expect(call.locator(".tool-label")).to_have_text("Extraction")
    expect(call.locator(".tool-summary")).to_have_text("contact_request: 6 fields")
    call.locator("summary").click()
    expect(call.locator(".tool-table th")).to_have_text(list(FIELDS))
    expect(call.locator(".tool-table td").first).to_have_text("Maria Lopez")
    page.screenshot(path=str(SCREENSHOTS / "chat_extract_call.png"), full_page=True)
    assert errors == []
