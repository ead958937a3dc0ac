"""A small foreground process supervisor: start children, notice one dying, stop them all in order.

Each child runs in its own session (process group). Ctrl-C in the terminal therefore reaches only the
supervisor, which stops the children newest first, and a signal sent to a child's group also reaches
the processes it forked (Celery's pool and beat, for instance).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
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


def _tee(source: IO[bytes], log_path: Path, console: IO[str]) -> None:
    with log_path.open("ab") as log:
        for line in iter(source.readline, b""):
            log.write(line)
            log.flush()
            console.write(line.decode(errors="replace"))
            console.flush()


class Supervisor:
    def __init__(self, log_dir: Path, say: Callable[[str], None] | None = None) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []
        self.say = say or (lambda text: print(f"[up] {text}", flush=True))

    def start(
        self,
        name: str,
        command: Sequence[str],
        *,
        console: bool = False,
        env: dict[str, str] | None = None,
    ) -> Child:
        """Start a child whose output goes to <log_dir>/<name>.log (and to the console if asked)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        full_env = {**os.environ, **(env or {})}
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if console else log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=full_env,
            )
        child = Child(name, process, log_path)
        if console:
            assert process.stdout is not None
            thread = threading.Thread(
                target=_tee, args=(process.stdout, log_path, sys.stdout), daemon=True
            )
            thread.start()
            child._threads.append(thread)
        self.children.append(child)
        return child

    def adopt(self, name: str, process: subprocess.Popen[bytes], log_path: Path) -> Child:
        """Supervise a process started elsewhere (in its own session, like `start` does)."""
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

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

    def stop_all(self, timeout: float = 10.0) -> None:
        """Stop the children newest first: SIGTERM to each group, SIGKILL what outlives `timeout`."""
        for child in reversed(self.children):
            self._stop(child, timeout)
        for child in self.children:
            for thread in child._threads:
                thread.join(timeout=2)

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
