"""A part that dies under `make run` is restarted with backoff while the others keep serving, and
/healthz says which parts are up.

The supervisor reads time through a clock the tests advance, so a backoff wait costs no real time
and "still restarting" can be looked at without racing the restart.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.test import Client

from chatbot.llm.stream import astream_text
from chatbot.llm.types import EndpointConfig, Message, ModelError, Prompt, Usage
from chatbot.runtime import model_server, up
from chatbot.runtime.embedded import port_open
from chatbot.runtime.supervisor import Child, Supervisor

UNAVAILABLE = "unavailable right now"
# A deadline, not a measurement: daphne's first requests on a busy two-core machine took over 10 s.
WEB_TIMEOUT = 30


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _kill(child: Child) -> int:
    """SIGKILL the part's main process only, the way a crash or the OOM killer would."""
    pid = child.pid
    os.kill(pid, signal.SIGKILL)
    child.process.wait()
    return pid


def _tend_until(sup: Supervisor, done: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            states = {c.name: c.state for c in sup.children}
            tails = {c.name: c.log_tail(5) for c in sup.children}
            pytest.fail(f"{what} did not happen within {timeout:.0f}s: {states}\n{tails}")
        sup.tend()
        time.sleep(0.1)


def _states(sup: Supervisor) -> dict[str, str]:
    return {child.name: child.state for child in sup.children}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def said() -> list[str]:
    return []


@pytest.fixture
def sup(tmp_path: Path, clock: Clock, said: list[str]) -> Iterator[Supervisor]:
    supervisor = Supervisor(
        tmp_path / "log", say=said.append, status_path=tmp_path / "run" / "parts.json", clock=clock
    )
    yield supervisor
    supervisor.stop_all(timeout=5)


def test_it_restarts_a_part_that_dies_and_keeps_the_others_serving(
    sup: Supervisor, clock: Clock, said: list[str]
) -> None:
    port = _free_port()
    web = sup.start(
        "web",
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        ready=lambda: port_open("127.0.0.1", port),
    )
    worker = sup.start("worker", ["sleep", "60"])
    _tend_until(sup, lambda: _states(sup) == {"web": "up", "worker": "up"}, "start-up")
    web_pid = web.pid

    old = _kill(worker)
    sup.tend()

    assert worker.state == "restarting"
    assert "worker exited with code -9; restarting in 1s" in said
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=WEB_TIMEOUT).status_code == 200
    assert web.pid == web_pid and _alive(web_pid) and web.state == "up"

    clock.advance(1)
    sup.tend()

    assert worker.state == "up" and worker.restarts == 1
    assert worker.pid != old and _alive(worker.pid)
    assert web.pid == web_pid and web.restarts == 0


def test_it_backs_off_doubling_to_a_cap_for_a_part_that_keeps_failing(
    tmp_path: Path, clock: Clock
) -> None:
    said: list[str] = []
    sup = Supervisor(tmp_path, say=said.append, clock=clock, backoff_initial=1, backoff_max=4)
    broken = sup.start("broken", ["sh", "-c", "echo 'cannot bind the port'; exit 3"])
    delays = []
    try:
        for _ in range(5):
            broken.process.wait()
            sup.tend()
            assert broken.state == "restarting"
            delays.append(broken.retry_in)
            clock.advance(broken.retry_in)
            sup.tend()
    finally:
        sup.stop_all(timeout=5)

    assert delays == [1, 2, 4, 4, 4]
    assert broken.restarts == 5, "a part that keeps failing keeps being retried"
    assert "broken exited with code 3; restarting in 4s" in said
    assert any("cannot bind the port" in line for line in said), "the log tail says why"


def test_it_resets_the_backoff_once_a_part_has_stayed_up_a_while(
    tmp_path: Path, clock: Clock
) -> None:
    sup = Supervisor(tmp_path, say=lambda text: None, clock=clock, stable_after=10)
    flaky = sup.start("flaky", ["sleep", "60"])
    try:
        _kill(flaky)
        sup.tend()
        first = flaky.retry_in
        clock.advance(first)
        sup.tend()
        _kill(flaky)
        sup.tend()
        quick_again = flaky.retry_in
        clock.advance(quick_again)
        sup.tend()
        clock.advance(10)
        _kill(flaky)
        sup.tend()
        after_a_good_run = flaky.retry_in
    finally:
        sup.stop_all(timeout=5)

    assert (first, quick_again, after_a_good_run) == (1, 2, 1)


def test_it_stops_a_restarted_part_and_forgets_the_status_on_shutdown(
    sup: Supervisor, clock: Clock, tmp_path: Path
) -> None:
    worker = sup.start("worker", ["sleep", "60"])
    _kill(worker)
    sup.tend()
    clock.advance(1)
    sup.tend()
    restarted = worker.pid
    assert (tmp_path / "run" / "parts.json").exists()

    sup.stop_all(timeout=5)

    assert not _alive(restarted)
    assert not (tmp_path / "run" / "parts.json").exists(), "a stopped supervisor reports nothing"


SERVE = """
import sys
from pathlib import Path
from chatbot.runtime.supervisor import Supervisor
from chatbot.runtime.up import serve_until_signalled

run = Path(sys.argv[1])
sup = Supervisor(run / "log", say=lambda text: None, status_path=run / "parts.json")
# "up" is first written by the serving loop, so once the file says so the handlers are in place.
child = sup.start("worker", ["sleep", "60"], ready=lambda: True)
print(child.pid, flush=True)
stopped_by = serve_until_signalled(sup)
sup.stop_all(timeout=5)
print(stopped_by, flush=True)
"""


def _part_state(path: Path, name: str) -> str | None:
    try:
        return str(json.loads(path.read_text())["parts"][name]["state"])
    except (OSError, ValueError, KeyError):
        return None


def test_it_stops_everything_in_order_on_sigterm_while_serving(tmp_path: Path) -> None:
    up_process = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert up_process.stdout is not None
    worker_pid = int(up_process.stdout.readline())
    while _part_state(tmp_path / "parts.json", "worker") != "up":
        time.sleep(0.02)

    up_process.send_signal(signal.SIGTERM)
    out, _ = up_process.communicate(timeout=60)

    assert out.strip() == "SIGTERM" and up_process.returncode == 0
    assert not _alive(worker_pid)
    assert not (tmp_path / "parts.json").exists()


@pytest.mark.django_db
def test_it_shows_each_part_on_healthz(
    sup: Supervisor, clock: Clock, tmp_path: Path, settings: Any
) -> None:
    settings.SUPERVISOR_STATUS_PATH = tmp_path / "run" / "parts.json"
    sup.start("steady", ["sleep", "60"])
    model = sup.start("model-server", ["sleep", "60"])
    _kill(model)
    sup.tend()

    degraded = Client().get("/healthz")

    assert degraded.status_code == 200, "the web part itself is fine: keep it in the balancer"
    assert degraded.json() == {
        "status": "degraded",
        "parts": {
            "steady": {"state": "up", "restarts": 0, "last_exit_code": None},
            "model-server": {"state": "restarting", "restarts": 0, "last_exit_code": -9},
        },
    }

    clock.advance(1)
    sup.tend()
    healthy = Client().get("/healthz").json()

    assert healthy["status"] == "ok"
    assert healthy["parts"]["model-server"] == {"state": "up", "restarts": 1, "last_exit_code": -9}


@pytest.mark.django_db
def test_it_reports_no_parts_on_healthz_without_a_live_supervisor(
    tmp_path: Path, settings: Any
) -> None:
    status_path = tmp_path / "parts.json"
    settings.SUPERVISOR_STATUS_PATH = status_path
    assert Client().get("/healthz").json() == {"status": "ok", "parts": {}}

    # A supervisor killed outright leaves its file behind; its pid no longer runs.
    gone = Supervisor(tmp_path / "log", say=lambda text: None, status_path=status_path)
    gone.start("model-server", ["true"]).process.wait()
    gone.tend()
    stale = json.loads(status_path.read_text())
    stale["pid"] = _dead_pid()
    status_path.write_text(json.dumps(stale))

    assert Client().get("/healthz").json() == {"status": "ok", "parts": {}}
    gone.stop_all(timeout=5)


def _endpoint_at(url: str) -> EndpointConfig:
    return EndpointConfig(
        id=1,
        name="local",
        provider="openai",
        base_url=url,
        model_id=model_server.MODEL_ALIAS,
        api_key_name="",
        style="completion",
        prompt_template="{question}",
        price_input_per_mtok=Decimal(0),
        price_output_per_mtok=Decimal(0),
        context_window=2048,
        max_output_tokens=8,
        temperature=0.0,
        region="local",
    )


async def _ask(url: str) -> str:
    prompt = Prompt((Message("user", "Is the VPN down?"),))
    return "".join([t async for t in astream_text(_endpoint_at(url), prompt, Usage())])


async def test_it_tells_the_user_the_model_is_unavailable_while_its_port_is_closed() -> None:
    with pytest.raises(ModelError) as caught:
        await _ask(model_server.base_url("127.0.0.1", _free_port()))

    assert UNAVAILABLE in caught.value.user_message
    assert "try again in a moment" in caught.value.user_message


def _celery_pong(name: str) -> bool:
    from chatbot.celery import app

    return bool(app.control.ping(destination=[name], timeout=1.0))


@pytest.mark.model_server
def test_it_brings_back_the_model_server_and_the_celery_worker_while_pages_keep_answering(
    sup: Supervisor, clock: Clock, tmp_path: Path
) -> None:
    model_path = Path(settings.LOCAL_MODEL_PATH)
    if not model_path.exists():
        pytest.fail(model_server.model_missing_message(model_path), pytrace=False)
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "SUPERVISOR_STATUS_PATH": str(tmp_path / "run" / "parts.json"),
    }
    model_port, web_port = _free_port(), _free_port()
    model_url = model_server.base_url("127.0.0.1", model_port)
    worker_name = f"sup-{uuid.uuid4().hex[:8]}@test"
    # The same parts `make run` starts, on free ports, with the test settings.
    model = up.adopt_model_server(sup, model_path=model_path, port=model_port, n_ctx=512)
    celery = sup.start(
        "celery",
        [*up.celery_command(sys.executable, concurrency=1, schedule=None), "-n", worker_name],
        env=env,
    )
    daphne = sup.start(
        "daphne",
        up.daphne_command(sys.executable, host="127.0.0.1", port=web_port),
        env=env,
        ready=lambda: port_open("127.0.0.1", web_port),
    )
    web = f"http://127.0.0.1:{web_port}"
    _tend_until(
        sup,
        lambda: set(_states(sup).values()) == {"up"} and _celery_pong(worker_name),
        "start-up",
        timeout=90,
    )
    daphne_pid = daphne.pid

    _kill(model)
    _kill(celery)
    sup.tend()

    health = httpx.get(f"{web}/healthz", timeout=WEB_TIMEOUT)
    assert health.status_code == 200
    assert health.json()["status"] == "degraded"
    parts = health.json()["parts"]
    assert parts["model-server"]["state"] == parts["celery"]["state"] == "restarting"
    assert parts["daphne"]["state"] == "up"
    assert httpx.get(f"{web}/accounts/login/", timeout=WEB_TIMEOUT).status_code == 200
    with pytest.raises(ModelError) as caught:
        asyncio.run(_ask(model_url))
    assert UNAVAILABLE in caught.value.user_message

    clock.advance(1)
    _tend_until(
        sup,
        lambda: (
            set(_states(sup).values()) == {"up"}
            and model_server.is_ready(model_url)
            and _celery_pong(worker_name)
        ),
        "the model server and the worker coming back",
    )

    health = httpx.get(f"{web}/healthz", timeout=WEB_TIMEOUT).json()
    assert health["status"] == "ok"
    assert health["parts"]["model-server"] == {"state": "up", "restarts": 1, "last_exit_code": -9}
    assert health["parts"]["celery"] == {"state": "up", "restarts": 1, "last_exit_code": -9}
    assert health["parts"]["daphne"]["restarts"] == 0 and daphne.pid == daphne_pid
