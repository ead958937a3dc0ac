"""Rita imports a dataset, starts an experiment from the form, watches the progress bar move
while a real Celery worker runs it, and lands on the results; then compares two runs."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from celery.contrib.testing.worker import TestWorkController
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, FilePayload, expect

from chatbot.models import Dataset, Experiment, ModelEndpoint
from tests.browser.conftest import SCREENSHOTS
from tests.browser.test_chat_browser import _collect_errors, _log_in
from tests.evaluation.datasets.helpers import EVALSET_ROWS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_runs_an_experiment_with_a_live_progress_bar(
    browser_context: BrowserContext,
    rita: User,
    fake_endpoint: Callable[..., ModelEndpoint],
    worker: TestWorkController,
) -> None:
    # Slow enough per item that the page sees the run in progress.
    fake_endpoint(["The link expires after 30 minutes."], sleep=0.02)
    page = browser_context.new_page()
    errors = _collect_errors(page)
    _log_in(page, "rita")

    page.goto("/review/datasets/")
    expect(page.get_by_text("No datasets yet")).to_be_visible()
    page.get_by_label("jsonl file").set_input_files(
        files=FilePayload(
            name="covid.jsonl",
            mimeType="application/jsonl",
            buffer="".join(json.dumps(r) + "\n" for r in EVALSET_ROWS).encode(),
        )
    )
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.get_by_text("3 items imported as version 1")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "dataset.png"), full_page=True)
    dataset = Dataset.objects.get(name="covid")

    page.get_by_role("button", name="Run an experiment").click()
    page.get_by_label("Name").fill("first run")
    page.get_by_label("Dataset").select_option(str(dataset.pk))
    page.get_by_label("Grounding").select_option("off")
    page.get_by_role("button", name="Start the experiment").click()
    expect(page).to_have_url(re.compile(r"/review/datasets/experiments/\d+/$"))
    page.screenshot(path=str(SCREENSHOTS / "experiment_running.png"), full_page=True)

    # The progress section polls, then the page reloads into the results once the run ends.
    expect(page.get_by_role("heading", name="Results")).to_be_visible(timeout=60_000)
    expect(page.locator("#experiment-progress")).to_contain_text("3 of 3 items")
    expect(page.locator(".summary-table")).to_contain_text("token F1")
    page.screenshot(path=str(SCREENSHOTS / "experiment_done.png"), full_page=True)
    first = Experiment.objects.get(name="first run")
    assert first.status == Experiment.Status.DONE

    page.goto(f"/review/datasets/experiments/new/?dataset={dataset.pk}")
    page.get_by_label("Name").fill("second run")
    page.get_by_label("Grounding").select_option("off")
    page.get_by_label("System prompt").fill("Answer in one word.")
    page.get_by_role("button", name="Start the experiment").click()
    expect(page.get_by_role("heading", name="Results")).to_be_visible(timeout=60_000)
    page.get_by_role("button", name="Compare with…").click()
    page.get_by_label("Candidate (B)").select_option(label="first run")
    page.get_by_role("button", name="Compare").click()
    expect(page.locator(".compare-table")).to_contain_text("token F1")
    page.screenshot(path=str(SCREENSHOTS / "experiment_compare.png"), full_page=True)
    assert errors == []
