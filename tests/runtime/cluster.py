"""Two daphne processes and two Celery workers on this machine, on the test database and the test
Redis, started the way `make run` starts one of each (`chatbot.runtime.up`); and the clients a
person's browser would be: a session cookie, real HTTP, real websockets.

Every process gets its own session (process group), so stopping one also stops what it forked
(a prefork worker's pool); `cluster_running` stops them all on the way out, failure or not.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from chatbot.celery import app as celery_app
from chatbot.runtime import up
from chatbot.runtime.embedded import port_open

ROOT = Path(__file__).resolve().parents[2]
METRICS_TOKEN = "two-processes-metrics-token"
# Deadlines, not measurements: on a busy two-core machine a cold daphne took over 10 s to answer
# its first request, and a worker's first ingestion loads the embedding model.
START_TIMEOUT = 90
WEB_TIMEOUT = 30
FRAME_TIMEOUT = 60
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Part:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Cluster:
    webs: list[str]
    workers: list[str]
    parts: list[Part] = field(default_factory=list)

    def pids(self, prefix: str) -> list[int]:
        return [part.process.pid for part in self.parts if part.name.startswith(prefix)]

    def report(self) -> str:
        return "\n".join(
            f"--- {p.name} (exit {p.process.poll()}) ---\n{p.log_tail()}" for p in self.parts
        )


CLUSTER_APPLICATION_NAME = "chatbot-test-cluster"


def child_env(run_dir: Path) -> dict[str, str]:
    """What every started process is told: the test settings, this session's test database and
    Redis database, and the same switches the test session runs with."""
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "TEST_REDIS_DB": str(settings.TEST_REDIS_DB),
        # conftest turns grounding off for every test of this session; these processes too.
        "ASSISTANT_GROUNDING_DEFAULT": "off",
        "METRICS_TOKEN": METRICS_TOKEN,
        "SUPERVISOR_STATUS_PATH": str(run_dir / "parts.json"),
        # Web only answers with the fake model here: no need to load the embedding model at start.
        "EMBEDDINGS_WARM_ON_START": "0",
        # libpq names every connection these processes make, so a test can tell them apart from
        # the test process's own (tests/runtime/test_two_processes.py drops them).
        "PGAPPNAME": CLUSTER_APPLICATION_NAME,
    }


def _start(name: str, command: list[str], env: dict[str, str], log_dir: Path) -> Part:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    return Part(name, process, log_path)


def _stop(parts: list[Part]) -> None:
    for part in parts:
        if part.process.poll() is None:
            _signal_group(part, signal.SIGTERM)
    for part in parts:
        with suppress(subprocess.TimeoutExpired):
            part.process.wait(timeout=15)
        # The group too: a prefork pool child outliving its parent must not keep running.
        _signal_group(part, signal.SIGKILL)
        if part.process.poll() is None:
            part.process.wait(timeout=5)


def _signal_group(part: Part, signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(part.process.pid, signum)


def _web_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=WEB_TIMEOUT, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _worker_ready(name: str) -> bool:
    return bool(celery_app.control.ping(destination=[name], timeout=1.0))


@contextmanager
def cluster_running(
    run_dir: Path, *, webs: int = 2, workers: int = 2, extra_env: dict[str, str] | None = None
) -> Iterator[Cluster]:
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**child_env(run_dir), **(extra_env or {})}
    ports = [free_port() for _ in range(webs)]
    names = [f"two-{i}-{uuid.uuid4().hex[:6]}@test" for i in range(workers)]
    cluster = Cluster(webs=[f"http://127.0.0.1:{p}" for p in ports], workers=names)
    try:
        for i, port in enumerate(ports):
            command = up.daphne_command(sys.executable, host="127.0.0.1", port=port)
            web_env = {**env, **up.daphne_env()}  # as `make run` starts it: pooled connections
            cluster.parts.append(_start(f"daphne-{i}", command, web_env, run_dir))
        for i, name in enumerate(names):
            command = [*up.celery_command(sys.executable, concurrency=1, schedule=None), "-n", name]
            cluster.parts.append(_start(f"worker-{i}", command, env, run_dir))
        pending_webs = dict(zip(cluster.webs, ports, strict=True))
        pending_workers = set(names)
        deadline = time.monotonic() + START_TIMEOUT
        while pending_webs or pending_workers:
            dead = [p for p in cluster.parts if p.process.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"the processes did not all start:\n{cluster.report()}")
            for url, port in list(pending_webs.items()):
                if port_open("127.0.0.1", port) and _web_ready(url):
                    del pending_webs[url]
            for name in list(pending_workers):
                if _worker_ready(name):
                    pending_workers.discard(name)
            time.sleep(0.2)
        yield cluster
    finally:
        _stop(cluster.parts)


# --- the clients ---------------------------------------------------------------------------------


def session_cookie(user: User) -> dict[str, str]:
    """A signed-in browser's cookie: a session row in the shared database, valid on any process."""
    client = Client()
    client.force_login(user)
    return {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}


def browser(base_url: str, user: User) -> httpx.Client:
    return httpx.Client(
        base_url=base_url, cookies=session_cookie(user), timeout=WEB_TIMEOUT, trust_env=False
    )


def post_form(
    client: httpx.Client, page: str, data: dict[str, str], *, action: str = ""
) -> httpx.Response:
    """Post a form on `page` (to `action`, the page itself by default) the way a browser does:
    open the page first for its CSRF token (the cookie comes with it)."""
    shown = client.get(page)
    shown.raise_for_status()
    found = CSRF_INPUT.search(shown.text)
    assert found, f"no CSRF token on {page}"
    return client.post(action or page, data={**data, "csrfmiddlewaretoken": found.group(1)})


@contextmanager
def chat_socket(
    base_url: str, user: User, conversation_id: int, *, cookies: dict[str, str] | None = None
) -> Iterator[ClientConnection]:
    """A chat page's websocket, signed in as `user` (or with the session `cookies` given)."""
    host = base_url.removeprefix("http://")
    cookie = "; ".join(f"{k}={v}" for k, v in (cookies or session_cookie(user)).items())
    with connect(
        f"ws://{host}/ws/chat/{conversation_id}/",
        origin=Origin(base_url),
        additional_headers={"Cookie": cookie},
        proxy=None,
        open_timeout=WEB_TIMEOUT,
    ) as sock:
        yield sock


def frames_until(sock: ClientConnection, kind: str, *, containing: str = "") -> list[str]:
    """Read frames until one whose data-frame is `kind` (and that contains `containing`)."""
    seen: list[str] = []
    deadline = time.monotonic() + FRAME_TIMEOUT
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {kind!r} frame within {FRAME_TIMEOUT}s; got {seen!r}")
        frame = str(sock.recv(timeout=left))
        seen.append(frame)
        if f'data-frame="{kind}"' in frame and containing in frame:
            return seen


def ask(sock: ClientConnection, question: str) -> list[str]:
    sock.send(json.dumps({"message": question}))
    return frames_until(sock, "end")


# --- /metrics and the workers' own counts ---------------------------------------------------------


def request_count(base_url: str, *, route: str, method: str = "GET", status: str = "2xx") -> float:
    """This process's count of answered requests for one URL pattern, read from its /metrics."""
    scraped = httpx.get(
        f"{base_url}/metrics",
        headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
        timeout=WEB_TIMEOUT,
        trust_env=False,
    )
    scraped.raise_for_status()
    labels = {"method": method, "route": route, "status": status}
    for family in text_string_to_metric_families(scraped.text):
        if family.name != "chatbot_http_request_duration_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_count") and sample.labels == labels:
                return float(sample.value)
    return 0.0


def tasks_run(workers: list[str], task: str) -> dict[str, int]:
    """How many of `task` each worker has run since it started (its own count, from `inspect`)."""
    stats: dict[str, Any] = celery_app.control.inspect(destination=workers, timeout=5).stats() or {}
    missing = set(workers) - set(stats)
    assert not missing, f"workers did not answer inspect: {missing}"
    return {name: int(stats[name].get("total", {}).get(task, 0)) for name in workers}
