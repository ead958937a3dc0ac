"""Synchronous pages and endpoints through daphne, with and without the connection pool.

    .venv/bin/python tests/benchmarks/bench_pages.py [--requests 200] [--rounds 3] \
        [--urls /chat/,/api/conversations,/v1/models]

Two daphne processes side by side on the dev database, as in production (`servers.production_env`:
DEBUG off), one with `DB_POOL=0`, one with `DB_POOL=1` (how `make run` and deploy/ start it). For
each round and each URL, `--requests` requests to one process then the other, on kept-alive
connections (the order alternates between rounds): `GET /chat/` (the chat page, a signed-in
browser's session cookie), `GET /api/conversations` (an API key) and `GET /v1/models` (an API key;
async, its work on the database threads, which keep one connection each either way). Under daphne
each synchronous view runs on a thread of its request's own; without the pool that thread opened a
new Postgres connection for every request. Prints p50 and p90 for each, the ratio of the medians
(without the pool over with it) and how many connections each process opened for its requests
(`pg_stat_database.sessions`, read before and after each batch, each process's batch alone).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
from django.conf import settings  # noqa: E402
from django.test import Client  # noqa: E402

from chatbot.accounts.roles import AGENT  # noqa: E402
from chatbot.accounts.services import api_key_create, user_create  # noqa: E402
from chatbot.models import ApiKey  # noqa: E402
from chatbot.runtime.embedded import ensure_services  # noqa: E402
from tests.benchmarks.servers import (  # noqa: E402
    daphne_running,
    free_port,
    production_env,
    sessions_opened,
)

BENCH_USER = "bench-pages"
URLS = ("/chat/", "/api/conversations", "/v1/models")
MODES = {"no pool": "0", "pool": "1"}


def batch(client: httpx.Client, url: str, requests: int) -> tuple[list[float], int]:
    before = sessions_opened()
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        reply = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        if reply.status_code != 200:
            raise SystemExit(f"{url} answered {reply.status_code}: {reply.text[:200]}")
    return times, sessions_opened() - before


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--urls", default=",".join(URLS), help="comma-separated paths")
    args = parser.parse_args()
    urls = [url.strip() for url in args.urls.split(",") if url.strip()]

    ensure_services()
    user = user_create(
        username=BENCH_USER, password=secrets.token_urlsafe(16), role=AGENT, full_name="Bench Pages"
    )
    ApiKey.objects.filter(user=user).delete()
    key = api_key_create(user=user, name="bench-pages").plaintext
    browser = Client()
    browser.force_login(user)
    cookie = {settings.SESSION_COOKIE_NAME: browser.cookies[settings.SESSION_COOKIE_NAME].value}
    ports = {mode: free_port() for mode in MODES}
    times: dict[tuple[str, str], list[float]] = {(m, u): [] for m in MODES for u in urls}
    opened: dict[tuple[str, str], int] = {(m, u): 0 for m in MODES for u in urls}
    try:
        with (
            daphne_running(ports["no pool"], env={**production_env(), "DB_POOL": "0"}),
            daphne_running(ports["pool"], env={**production_env(), "DB_POOL": "1"}),
        ):
            clients = {
                mode: httpx.Client(
                    base_url=f"http://127.0.0.1:{port}",
                    headers={"Authorization": f"Bearer {key}"},
                    cookies=cookie,
                    timeout=30,
                )
                for mode, port in ports.items()
            }
            for client in clients.values():  # warm: first requests, the pool's first connections
                for url in urls:
                    batch(client, url, 10)
            for round_ in range(args.rounds):
                order = list(MODES) if round_ % 2 == 0 else list(reversed(MODES))
                for url in urls:
                    for mode in order:
                        spent, made = batch(clients[mode], url, args.requests)
                        times[(mode, url)] += spent
                        opened[(mode, url)] += made
            for client in clients.values():
                client.close()
    finally:
        ApiKey.objects.filter(user=user).delete()

    total = args.requests * args.rounds
    print(f"\n{total} requests a URL and mode, {args.rounds} rounds alternated, kept-alive clients")
    for url in urls:
        for mode in MODES:
            values = times[(mode, url)]
            print(
                f"GET {url:<20} {mode:<8} p50 {percentile(values, 0.5):6.2f} ms   "
                f"p90 {percentile(values, 0.9):6.2f} ms   "
                f"connections opened {opened[(mode, url)]:4d}"
            )
        ratio = statistics.median(times[("no pool", url)]) / statistics.median(times[("pool", url)])
        print(f"GET {url:<20} without the pool / with it, medians: {ratio:.2f}x")


if __name__ == "__main__":
    main()
