"""Per-process figures for deploy/SCALING.md ("Measured: two processes on one machine").

Starts the same two daphne processes and two workers as tests/runtime/test_two_processes.py, on an
already migrated database (DATABASE_URL; e.g. your test database after a test run), and prints:
the resident memory of each idle process (with a worker's pool child), then what holding N open
chat websockets costs daphne A (memory per connection, and whether all N were served).

    DATABASE_URL=postgres://postgres@127.0.0.1:15432/test_<you> TEST_REDIS_DB=<n> \\
        .venv/bin/python -m tests.runtime.measure_two_processes [--sockets 200]

Not a test: nothing is asserted, and it writes the demo users and one conversation.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path


def _rss_kib(pid: int) -> int:
    """VmRSS of `pid` plus its direct children (a prefork worker's pool process)."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for one in pids:
        for line in Path(f"/proc/{one}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument(
        "--warm", action="store_true", help="load the embedding model at start, as production does"
    )
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from chatbot.accounts.services import demo_users_ensure
    from chatbot.chat import services
    from tests.conftest import PASSWORD
    from tests.runtime.cluster import chat_socket, cluster_running, session_cookie

    alice = next(u for u in demo_users_ensure(password=PASSWORD) if u.username == "alice")
    conversation = services.conversation_create(owner=alice)
    with (
        tempfile.TemporaryDirectory() as tmp,
        cluster_running(
            Path(tmp), extra_env={"EMBEDDINGS_WARM_ON_START": "1" if args.warm else "0"}
        ) as cluster,
    ):
        time.sleep(
            15 if args.warm else 5
        )  # let start-up (and warming) settle before reading memory
        for part in cluster.parts:
            print(f"idle {part.name}: {_rss_kib(part.process.pid) / 1024:.0f} MiB RSS")
        web_a, pid_a = cluster.webs[0], cluster.pids("daphne")[0]
        before = _rss_kib(pid_a)
        cookies = session_cookie(alice)  # one signed-in browser, many tabs
        started = time.perf_counter()
        with ExitStack() as stack:
            for _ in range(args.sockets):
                stack.enter_context(chat_socket(web_a, alice, conversation.pk, cookies=cookies))
            opened = time.perf_counter() - started
            time.sleep(2)
            held = _rss_kib(pid_a)
            print(
                f"daphne A holding {args.sockets} open chat sockets: "
                f"+{(held - before) / 1024:.1f} MiB "
                f"({(held - before) / args.sockets:.0f} KiB each), "
                f"opened in {opened:.1f} s ({args.sockets / opened:.0f}/s, one client thread)"
            )


if __name__ == "__main__":
    main()
