"""Adam in a real Chromium: the dashboard draws its charts with Chart.js from the rollups, and a
turn's trace page shows its waterfall."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, expect

from chatbot.models import Span, Turn
from observability import services
from tests.browser.conftest import SCREENSHOTS
from tests.browser.test_chat_browser import _collect_errors, _log_in
from tests.observability.factory import generate
from tests.observability.test_trace import traced_turn

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_renders_the_dashboard_charts_in_chromium(
    browser_context: BrowserContext, alice: User, rita: User, adam: User
) -> None:
    generate([alice, rita, adam], turns=300)
    services.rollups_update()
    page = browser_context.new_page()
    errors = _collect_errors(page)
    _log_in(page, "adam")

    page.goto("/dashboard/?start=2026-03-02&end=2026-03-04")

    expect(page.get_by_role("heading", name="Dashboard", exact=True)).to_be_visible()
    canvases = page.locator("canvas[data-chart]")
    expect(canvases).to_have_count(9)
    expect(page.locator('canvas[data-chart][data-rendered="true"]')).to_have_count(9)
    drawn = page.evaluate(
        """() => Array.from(document.querySelectorAll("canvas[data-chart]")).map((c) => {
             const chart = window.Chart.getChart(c);
             return chart ? [c.dataset.chart, chart.data.labels.length, c.width > 0] : null;
           })"""
    )
    assert all(drawn), drawn
    by_key = {key: (labels, sized) for key, labels, sized in drawn}
    assert by_key["latency"] == (3, True), "one point a day"
    assert by_key["by_model"][0] == 3, "two models and the no-answer turns"
    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)

    traced = traced_turn(alice)
    page.goto(f"/dashboard/turns/{traced.pk}/")
    expect(page.get_by_role("heading", name=f"Turn {traced.pk}")).to_be_visible()
    rows = page.locator(".waterfall .span-row")
    expect(rows).to_have_count(Span.objects.filter(turn=traced).count())
    tool = rows.filter(has_text="crm_lookup")
    tool.locator("summary").click()
    expect(tool.get_by_text("Account found: active")).to_be_visible()
    expect(tool.get_by_text("<EMAIL_ADDRESS>")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "trace.png"), full_page=True)

    plain = Turn.objects.filter(status="done", is_replay=False).order_by("pk").first()
    assert plain is not None
    Span.objects.filter(turn=plain).delete()
    page.goto(f"/dashboard/turns/{plain.pk}/")
    expect(page.get_by_text("No spans were recorded for this turn")).to_be_visible()
    assert not errors, errors
