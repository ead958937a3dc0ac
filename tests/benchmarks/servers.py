"""Servers the benchmarks start: daphne, serving the project on a free port (logs under var/log)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection

from chatbot.runtime.embedded import port_open
from chatbot.runtime.up import daphne_env

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def production_env(database: str | None = None, redis_db: int | None = None) -> dict[str, str]:
    """What daphne needs to run as in production (DEBUG off: no query log, no debug pages) on
    plain-HTTP loopback, against this process's database (or `database` on the same server) and
    Redis (or database `redis_db` there)."""
    db = settings.DATABASES["default"]
    redis_url = settings.REDIS_URL
    if redis_db is not None:
        redis_url = f"{redis_url.rsplit('/', 1)[0]}/{redis_db}"
    return {
        "DEBUG": "0",
        # Sessions are signed: daphne must read the ones this process wrote.
        "SECRET_KEY": settings.SECRET_KEY,
        "SECURE_SSL_REDIRECT": "0",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "SECURE_PROXY_SSL_HEADER": "",
        "DATABASE_URL": f"postgres://{db['USER']}:@{db['HOST']}:{db['PORT']}/{database or db['NAME']}",
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "WARNING",
    }


@contextmanager
def daphne_running(
    port: int, *, log_name: str = "bench-daphne.log", env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """daphne on 127.0.0.1:`port` until the block ends; yields its process. It starts as `make run`
    starts it (`up.daphne_env()`: pooled database connections); `env` adds to (or overrides) the
    environment it inherits."""
    log = Path(settings.VAR_DIR) / "log" / log_name
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
             "chatbot.asgi:application"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            # A benchmark sends far more than a person's RATE_LIMIT_PER_MINUTE on purpose; the
            # limit's check (one Redis call) still runs, only its figure is lifted.
            env={**os.environ, "RATE_LIMIT_PER_MINUTE": os.environ.get("RATE_LIMIT_PER_MINUTE", "1000000"), **daphne_env(), **(env or {})},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"daphne did not start; see {log}")
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        process.wait(10)


def sessions_opened() -> int:
    """Connections ever made to this process's database (Postgres counts one when its server
    process ends, so a just-closed connection is given a moment to report)."""
    time.sleep(0.5)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        row = cursor.fetchone()
    return int(row[0]) if row else 0
