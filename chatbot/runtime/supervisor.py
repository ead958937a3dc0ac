"""A small foreground process supervisor: start children, restart one that dies, stop them in order.

Each child runs in its own session (process group). Ctrl-C in the terminal therefore reaches only the
supervisor, which stops the children newest first, and a signal sent to a child's group also reaches
the processes it forked (Celery's pool and beat, for instance).

A child that dies is started again after a backoff (1 s, doubling to 30 s, back to 1 s once it has
stayed up a minute), so the model server crashing leaves chat, pages and the worker serving. A part
that keeps failing keeps being retried at the cap: the rest of the product must keep working. The
state of every part goes to a small JSON file (`settings.SUPERVISOR_STATUS_PATH`) that /healthz,
in daphne's process, reads.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

Spawn = Callable[[], "subprocess.Popen[bytes]"]

# What each part's state means on /healthz: "starting" runs but does not answer yet (the model
# loading), "restarting" is dead and waiting for its backoff, "exited" died and cannot be restarted.
STARTING, UP, RESTARTING, EXITED, STOPPED = "starting", "up", "restarting", "exited", "stopped"


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    spawn: Spawn | None = None
    ready: Callable[[], bool] | None = None
    console: bool = False
    state: str = UP
    restarts: int = 0
    last_exit_code: int | None = None
    started_at: float = 0.0
    retry_at: float = 0.0
    retry_in: float = 0.0
    backoff: float = 0.0
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def status(self, now: float) -> dict[str, Any]:
        part: dict[str, Any] = {
            "state": self.state,
            "pid": self.pid,
            "restarts": self.restarts,
            "last_exit_code": self.last_exit_code,
        }
        if self.state == RESTARTING:
            part["retry_in_s"] = round(max(0.0, self.retry_at - now), 1)
        return part


def _tee(source: IO[bytes], log_path: Path, console: IO[str]) -> None:
    with log_path.open("ab") as log:
        for line in iter(source.readline, b""):
            log.write(line)
            log.flush()
            console.write(line.decode(errors="replace"))
            console.flush()


class Supervisor:
    def __init__(
        self,
        log_dir: Path,
        say: Callable[[str], None] | None = None,
        *,
        status_path: Path | None = None,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        stable_after: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []
        self.say = say or (lambda text: print(f"[up] {text}", flush=True))
        self.status_path = status_path
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        # A part that ran this long before dying was healthy: its next restart is quick again.
        self.stable_after = stable_after
        self.clock = clock

    def start(
        self,
        name: str,
        command: Sequence[str],
        *,
        console: bool = False,
        env: dict[str, str] | None = None,
        ready: Callable[[], bool] | None = None,
    ) -> Child:
        """Start a child whose output goes to <log_dir>/<name>.log (and to the console if asked).

        `ready` tells a started child from one that answers (a port open); until it does, the
        child is "starting".
        """
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        full_env = {**os.environ, **(env or {})}
        argv = list(command)

        def spawn() -> subprocess.Popen[bytes]:
            with log_path.open("ab") as log:
                return subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE if console else log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=full_env,
                )

        child = Child(name, spawn(), log_path, spawn=spawn, ready=ready, console=console)
        return self._add(child)

    def adopt(
        self,
        name: str,
        process: subprocess.Popen[bytes],
        log_path: Path,
        *,
        spawn: Spawn | None = None,
        ready: Callable[[], bool] | None = None,
    ) -> Child:
        """Supervise a process started elsewhere (in its own session, like `start` does).

        Without `spawn` (how to start it again) a child that dies is reported, not restarted.
        """
        return self._add(Child(name, process, log_path, spawn=spawn, ready=ready))

    def _add(self, child: Child) -> Child:
        child.started_at = self.clock()
        child.backoff = self.backoff_initial
        child.state = STARTING if child.ready else UP
        self._tee(child)
        self.children.append(child)
        self.write_status()
        return child

    def _tee(self, child: Child) -> None:
        if not child.console:
            return
        assert child.process.stdout is not None
        thread = threading.Thread(
            target=_tee, args=(child.process.stdout, child.log_path, sys.stdout), daemon=True
        )
        thread.start()
        child._threads.append(thread)

    def first_exited(self) -> Child | None:
        for child in self.children:
            if child.process.poll() is not None:
                return child
        return None

    def watch(self, stop: threading.Event, interval: float = 0.5) -> Child | None:
        """Block until a child exits (returned) or `stop` is set (None)."""
        while not stop.is_set():
            dead = self.first_exited()
            if dead is not None:
                return dead
            stop.wait(interval)
        return None

    def serve(self, should_stop: Callable[[], bool], interval: float = 0.5) -> None:
        """Keep every part running (restarting the ones that die) until `should_stop()`."""
        while not should_stop():
            self.tend()
            time.sleep(interval)

    def tend(self) -> None:
        """One look at every part: notice deaths, restart those whose backoff is over."""
        changed = False
        for child in self.children:
            changed = self._tend(child, self.clock()) or changed
        if changed:
            self.write_status()

    def _tend(self, child: Child, now: float) -> bool:
        if child.state in (STARTING, UP) and child.process.poll() is not None:
            self._died(child, now)
            return True
        if child.state == STARTING and child.ready is not None and child.ready():
            child.state = UP
            if child.restarts:
                self.say(f"{child.name} is back (restart {child.restarts})")
            return True
        if child.state == RESTARTING and now >= child.retry_at:
            self._restart(child, now)
            return True
        return False

    def _died(self, child: Child, now: float) -> None:
        code = child.process.returncode
        child.last_exit_code = code
        # Its forked processes (Celery's pool) must not outlive it and compete with the next one.
        _signal_group(child.pid, signal.SIGTERM)
        if child.spawn is None:
            child.state = EXITED
            self.say(f"{child.name} exited with code {code} and cannot be restarted")
            return
        if now - child.started_at >= self.stable_after:
            child.backoff = self.backoff_initial
        self._schedule(child, now)
        self.say(f"{child.name} exited with code {code}; restarting in {child.retry_in:g}s")
        tail = child.log_tail(5)
        if tail:
            self.say(f"last lines of {child.log_path}:\n{tail}")

    def _schedule(self, child: Child, now: float) -> None:
        child.state = RESTARTING
        child.retry_in = child.backoff
        child.retry_at = now + child.backoff
        child.backoff = min(child.backoff * 2, self.backoff_max)

    def _restart(self, child: Child, now: float) -> None:
        assert child.spawn is not None
        _signal_group(child.pid, signal.SIGKILL)
        child.restarts += 1
        child.started_at = now
        try:
            child.process = child.spawn()
        except Exception as exc:  # a missing model file, a full disk: try again later
            self._schedule(child, now)
            self.say(f"could not restart {child.name} ({exc}); trying again in {child.retry_in:g}s")
            return
        child.state = STARTING if child.ready else UP
        self._tee(child)

    def write_status(self) -> None:
        """Replace the status file in one step, so a reader never sees half of it."""
        if self.status_path is None:
            return
        now = self.clock()
        status = {
            "pid": os.getpid(),
            "updated_at": time.time(),
            "parts": {child.name: child.status(now) for child in self.children},
        }
        partial = self.status_path.with_name(f".{self.status_path.name}.{os.getpid()}")
        try:
            self.status_path.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps(status))
            os.replace(partial, self.status_path)
        except OSError as exc:  # a full disk must not stop the parts that still serve
            self.say(f"could not write {self.status_path}: {exc}")

    def stop_all(self, timeout: float = 10.0) -> None:
        """Stop the children newest first: SIGTERM to each group, SIGKILL what outlives `timeout`."""
        for child in reversed(self.children):
            child.state = STOPPED
            self._stop(child, timeout)
        for child in self.children:
            for thread in child._threads:
                thread.join(timeout=2)
        if self.status_path is not None:
            self.status_path.unlink(missing_ok=True)

    def _stop(self, child: Child, timeout: float) -> None:
        if child.process.poll() is None:
            self.say(f"stopping {child.name} (pid {child.pid})")
        _signal_group(child.pid, signal.SIGTERM)
        try:
            child.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.say(f"{child.name} did not stop within {timeout:.0f}s; killing it")
            _signal_group(child.pid, signal.SIGKILL)
            child.process.wait()
        # Grandchildren that outlive their parent (a pool process) are still in the group.
        deadline = time.monotonic() + timeout
        while _group_alive(child.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        _signal_group(child.pid, signal.SIGKILL)


def read_status(path: Path) -> dict[str, Any] | None:
    """The parts' status as the supervisor last wrote it; None without a live supervisor."""
    try:
        status = json.loads(path.read_text())
        pid = int(status["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(status, dict) or not isinstance(status.get("parts"), dict):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # a supervisor killed outright left its file behind
    except PermissionError:
        pass
    return status


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in the group.

    In a container whose PID 1 does not reap orphans, zombies would keep `killpg(pgid, 0)` true.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state, ppid, pgrp, ...
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            return True
    return False
