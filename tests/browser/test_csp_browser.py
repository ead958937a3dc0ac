"""Every page works under the content security policy: alice, rita and adam each walk the whole
product in Chromium (every link they can follow, one page of each kind, plus every console tab
named in templates/console/_tabs.html) and the browser reports no violation. The pages still work:
the chat streams an answer over its websocket, htmx filters the review queue, the dashboard draws
its charts."""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.urls import reverse
from playwright.sync_api import BrowserContext, Page, expect
from playwright.sync_api import Error as PlaywrightError

from chatbot.models import Turn
from evaluation.datasets import services as datasets
from evaluation.exports.services import export_create
from observability import services as observability
from tests.browser.test_chat_browser import _log_in
from tests.evaluation.datasets.helpers import make_dataset
from tests.evaluation.review.support import flagged_item
from tests.knowledge.test_search import make_knowledge_base
from tests.observability.factory import generate
from tests.observability.test_trace import traced_turn

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TABS = Path(settings.BASE_DIR) / "templates" / "console" / "_tabs.html"
# Reported to Python from the page, so nothing is lost when the next navigation starts.
REPORT_VIOLATIONS = """
document.addEventListener('securitypolicyviolation', (e) => {
  window.cspViolation({
    page: location.pathname + location.hash, directive: e.effectiveDirective, blocked: e.blockedURI,
    sample: e.sample, source: e.sourceFile + ':' + e.lineNumber,
  });
});
"""
# Not pages, or not ours: signing out would end the walk; downloads and JSON have no document.
NOT_PAGES = re.compile(
    r"^/(accounts/logout|admin|api|v1|metrics|healthz|static)(/|$)|/download/?$|csv"
)
MAX_PAGES_PER_ROLE = 120


def console_tabs() -> list[str]:
    """The console's tabs as the template lists them today, so tabs added later are walked too."""
    names = re.findall(r"\{% url 'console:(\w+)' %\}", TABS.read_text())
    assert len(names) >= 7, names
    return [reverse(f"console:{name}") for name in names]


def _kind(path: str) -> str:
    """/review/items/12/ and /review/items/13/ are the same template: visit one of each."""
    return re.sub(r"\d+", "N", path)


class Walk:
    def __init__(self, context: BrowserContext) -> None:
        self.violations: list[dict[str, Any]] = []
        self.csp_messages: list[str] = []
        self.script_errors: list[str] = []
        self.visited: dict[str, int] = {}
        context.expose_function("cspViolation", self._violation)
        context.add_init_script(REPORT_VIOLATIONS)

    def _violation(self, report: dict[str, Any]) -> None:
        self.violations.append(report)

    def watch(self, page: Page) -> Page:
        def on_console(message: Any) -> None:
            if (
                "Content Security Policy" in message.text
                or "Content-Security-Policy" in message.text
            ):
                self.csp_messages.append(f"{page.url}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: self.script_errors.append(f"{page.url}: {exc}"))
        return page

    def crawl(self, page: Page, seeds: list[str]) -> dict[str, int]:
        """Breadth first over same-origin links; returns {path: status} of what was opened."""
        opened: dict[str, int] = {}
        kinds: set[str] = set()
        queue = deque(seeds)
        while queue and len(opened) < MAX_PAGES_PER_ROLE:
            path = queue.popleft()
            if path in opened or (_kind(path) in kinds and path not in seeds):
                continue
            kinds.add(_kind(path))
            try:
                response = page.goto(path, wait_until="load")
            except PlaywrightError as exc:
                if "Download is starting" in str(exc):
                    continue  # a file (CSV, JSONL export), not a page
                raise
            opened[path] = response.status if response else 0
            self.visited[path] = opened[path]
            hrefs: list[str] = page.eval_on_selector_all(
                "a[href]:not([download])", "links => links.map((a) => a.href)"
            )
            origin = urlsplit(page.url).netloc
            for href in hrefs:
                parts = urlsplit(href)
                target = parts.path + (f"?{parts.query}" if parts.query else "")
                if parts.netloc == origin and parts.path and not NOT_PAGES.search(target):
                    queue.append(target)
        return opened


def _seed_everything(alice: User, rita: User, adam: User) -> dict[str, Any]:
    """One of every kind of object a page shows, so the walk reaches each detail page."""
    make_knowledge_base()
    item = flagged_item(alice, answer="Click **Forgot password** [1].")
    traced = traced_turn(alice)
    generate([alice, rita, adam], turns=60)
    observability.rollups_update()
    dataset = make_dataset("CSP walk", questions=("How do I reset a password?",))
    datasets.experiment_create(dataset=dataset, user=adam, queue=False)
    export_create(kind="sft", user=adam, queue=False)
    return {"item": item, "trace": traced}


# An inline <style>, which the policy forbids: the walk's detectors must see it.
PROBE = """() => new Promise((resolve) => {
  location.hash = 'csp-probe';
  document.addEventListener('securitypolicyviolation', (e) => resolve(e.effectiveDirective),
                            {once: true});
  const style = document.createElement('style');
  style.textContent = 'body { color: red; }';
  document.head.appendChild(style);
})"""


def _ask_in_chat(page: Page) -> None:
    page.goto("/chat/")
    page.get_by_role("button", name="New conversation", exact=True).click()
    expect(page.locator('#chat[data-socket="open"]')).to_be_attached()
    question = page.get_by_label("Your question")
    question.fill("How do I reset a customer's password?")
    question.press("Enter")
    answer = page.locator("#thread .msg-assistant.status-done")
    expect(answer.locator("strong")).to_have_text("Settings → Security")


def test_every_page_works_under_the_content_security_policy(
    browser_context: BrowserContext, alice: User, rita: User, adam: User, fake_endpoint: Any
) -> None:
    fake_endpoint(["Open **Settings → Security** and choose *Reset password*."], sleep=0.01)
    seeded = _seed_everything(alice, rita, adam)
    walk = Walk(browser_context)
    page = walk.watch(browser_context.new_page())

    # alice: a streamed answer over the websocket, then everything she can reach.
    _log_in(page, "alice")
    assert page.evaluate(PROBE) == "style-src-elem"
    _ask_in_chat(page)
    assert Turn.objects.filter(conversation__owner=alice, status="done").exists()
    alice_pages = walk.crawl(page, ["/chat/", "/knowledge/", "/chat/extract/"])
    # The API's Swagger page (ninja's, with its own bundled scripts) renders the schema.
    page.goto("/api/docs")
    expect(page.get_by_text("Search the knowledge base").first).to_be_visible()
    assert any(re.fullmatch(r"/chat/\d+/", p) for p in alice_pages), alice_pages

    # rita: the review queue's filters are an htmx request that replaces the table.
    browser_context.clear_cookies()
    _log_in(page, "rita")
    page.goto("/review/")
    with page.expect_response(
        lambda r: "/review/" in r.url and r.request.headers.get("hx-request") == "true"
    ) as filtered:
        page.select_option("#filter-status", index=1)
    assert filtered.value.status == 200
    rita_pages = walk.crawl(
        page,
        [
            "/review/",
            reverse("review:item", args=[seeded["item"].pk]),
            "/review/escalations/",
            "/dashboard/",
            f"/dashboard/turns/{seeded['trace'].pk}/",
        ],
    )
    assert rita_pages[reverse("review:item", args=[seeded["item"].pk])] == 200

    # adam: every console tab, the dashboard's charts, and the rest of the product.
    browser_context.clear_cookies()
    _log_in(page, "adam")
    page.goto("/dashboard/?start=2026-03-02&end=2026-03-04")
    expect(page.locator('canvas[data-chart][data-rendered="true"]').first).to_be_attached()
    tabs = console_tabs()
    adam_pages = walk.crawl(
        page,
        [
            *tabs,
            "/knowledge/",
            "/review/",
            reverse("review:datasets"),
            reverse("review:experiments"),
            reverse("review:exports"),
            "/dashboard/",
        ],
    )
    assert {tab: adam_pages.get(tab) for tab in tabs} == {tab: 200 for tab in tabs}

    probed = [v for v in walk.violations if v["page"].endswith("#csp-probe")]
    assert probed and probed[0]["directive"] == "style-src-elem", "the detector is live"
    assert any("#csp-probe" in message for message in walk.csp_messages)
    violations = [v for v in walk.violations if v not in probed]
    csp_messages = [m for m in walk.csp_messages if "#csp-probe" not in m]

    broken = {path: status for path, status in walk.visited.items() if status >= 500}
    assert broken == {}
    assert len(walk.visited) > 40, sorted(walk.visited)
    assert violations == [], violations
    assert csp_messages == [], csp_messages
    assert walk.script_errors == [], walk.script_errors
