"""The pieces of `make run` that can be checked quickly: the model server's command and the
supervisor's handling of real (tiny) child processes."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from chatbot.runtime import model_server
from chatbot.runtime.supervisor import Supervisor


def _alive(pid: int) -> bool:
    """Running and not a zombie (an orphan's zombie may linger until PID 1 reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_for_text(path: Path, text: str) -> None:
    while text not in (path.read_text() if path.exists() else ""):
        time.sleep(0.02)


def test_it_builds_the_llama_cpp_server_command() -> None:
    command = model_server.server_command(
        model_path=Path("/models/m.gguf"), port=9123, n_ctx=2048, python="/venv/bin/python"
    )

    assert command[:3] == ["/venv/bin/python", "-m", "llama_cpp.server"]
    pairs = dict(zip(command[3::2], command[4::2], strict=True))
    assert pairs == {
        "--model": "/models/m.gguf",
        "--model_alias": model_server.MODEL_ALIAS,
        "--host": "127.0.0.1",
        "--port": "9123",
        "--n_ctx": "2048",
    }
    assert model_server.base_url("127.0.0.1", 9123) == "http://127.0.0.1:9123/v1"


def test_it_keeps_port_and_host_variables_away_from_the_model_server() -> None:
    env = model_server.server_env({"PORT": "8000", "HOST": "localhost", "PATH": "/usr/bin"})

    assert env == {"PATH": "/usr/bin"}


def test_it_refuses_to_start_without_the_model_file(tmp_path: Path) -> None:
    with pytest.raises(model_server.ModelServerError, match="make model"):
        model_server.start(
            model_path=tmp_path / "missing.gguf", port=9, log_path=tmp_path / "m.log"
        )


def test_it_stops_every_child_and_the_processes_they_forked(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path, say=lambda text: None)
    plain = sup.start("plain", ["sleep", "60"])
    pidfile = tmp_path / "grandchild.pid"
    forking = sup.start(
        "forking",
        ["sh", "-c", f"sleep 60 & echo $! > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; wait"],
    )
    while not pidfile.exists():
        time.sleep(0.02)
    grandchild = int(pidfile.read_text())
    assert _alive(grandchild)

    sup.stop_all(timeout=5)

    assert plain.process.returncode is not None
    assert forking.process.returncode is not None
    assert not _alive(grandchild), "a process a child forked must not outlive the supervisor"


def test_it_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path, say=lambda text: None)
    stubborn = sup.start(
        "stubborn",
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)",
        ],
    )
    _wait_for_text(stubborn.log_path, "ready")

    sup.stop_all(timeout=0.5)

    assert stubborn.process.returncode == -9


def test_it_reports_the_child_that_exited_with_its_output(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path, say=lambda text: None)
    sup.start("steady", ["sleep", "60"])
    sup.start("broken", ["sh", "-c", "echo 'cannot bind the port'; exit 3"])

    dead = sup.watch(threading.Event(), interval=0.05)
    sup.stop_all(timeout=5)

    assert dead is not None and dead.name == "broken"
    assert dead.process.returncode == 3
    assert "cannot bind the port" in dead.log_tail()
    assert all(child.process.returncode is not None for child in sup.children)


def test_it_sends_console_children_to_the_log_and_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sup = Supervisor(tmp_path, say=lambda text: None)
    child = sup.start("web", ["sh", "-c", "echo listening on 8000"], console=True)
    child.process.wait()

    sup.stop_all(timeout=5)

    assert "listening on 8000" in (tmp_path / "web.log").read_text()
    assert "listening on 8000" in capsys.readouterr().out


def test_it_returns_none_from_watch_when_asked_to_stop(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path, say=lambda text: None)
    sup.start("steady", ["sleep", "60"])
    stop = threading.Event()
    stop.set()

    assert sup.watch(stop) is None
    sup.stop_all(timeout=5)
