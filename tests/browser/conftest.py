"""A real daphne serving the ASGI app (HTTP, websockets and static files) on the test database,
and a real headless Chromium driven by Playwright."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest
from asgiref.sync import SyncToAsync
from channels.testing.live import make_application
from daphne.testing import DaphneProcess
from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from playwright.sync_api import BrowserContext, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(settings.VAR_DIR) / "screenshots"


def _server_setup() -> None:
    """Runs in the forked server process before it serves.

    asgiref's shared worker thread (used by `database_sync_to_async` outside a request) belongs
    to the parent: after an async test has started it, the child inherits an executor whose
    thread did not survive the fork, and every database call from a consumer would wait forever.

    The database name needs no change: pytest-django pointed the settings at the test database
    before the fork (channels' `set_database_connection` would prefix it a second time).
    """
    SyncToAsync.single_thread_executor = ThreadPoolExecutor(max_workers=1)


@pytest.fixture
def live_server_url(transactional_db: None) -> Iterator[str]:
    """Daphne in a child process, as channels' ChannelsLiveServerTestCase runs it.

    The child is forked after the test database exists and sees committed rows only, hence
    `transactional_db`. It is stopped before the database is flushed.
    """
    server = DaphneProcess(
        "127.0.0.1",
        partial(make_application, static_wrapper=ASGIStaticFilesHandler),
        setup=_server_setup,
    )
    server.start()
    try:
        while not server.ready.wait(timeout=1):
            if not server.is_alive():
                detail = "" if server.errors.empty() else server.errors.get(False)[1]
                raise RuntimeError(f"daphne did not start:\n{detail}")
        yield f"http://127.0.0.1:{server.port.value}"
    finally:
        server.terminate()
        server.join(timeout=10)


@pytest.fixture
def browser_context(
    live_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[BrowserContext]:
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip("Chromium is not installed (make test installs it: apt-get install chromium)")
    # Playwright's sync API runs an event loop in this thread, which makes Django refuse the
    # ORM calls the test makes to check what was stored; those calls are plain sync code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(
            base_url=live_server_url, viewport={"width": 1360, "height": 860}
        )
        context.set_default_timeout(15_000)
        try:
            yield context
        finally:
            context.close()
            browser.close()
