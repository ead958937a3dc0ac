"""Many answers streaming at once through one daphne process: websockets and /v1 SSE side by side.

    .venv/bin/python tests/benchmarks/bench_streams.py [--sizes 1,50,200,500] [--tokens 50]
        [--interval-ms 100] [--ws-only | --sse-only] [--timeout 900] [--keep]

Data: a database of its own (`bench_streams`, beside the dev database; dropped at the end unless
`--keep`), migrated, with as many agents as the largest wave (`bench-streams-0001`...), each
signed in (a session row, as a browser's login leaves) and holding an API key. Every stream is a
different person, so no one is over the real limits (RATE_LIMIT_PER_MINUTE, MAX_CONCURRENT_ANSWERS,
the token quota): daphne runs with the product's defaults for them, checks included.

Processes, all on loopback, all stopped at the end (and by `--timeout`, whatever happens):
  - the model: `steady_peer.py` under uvicorn, an OpenAI-compatible server that streams the tokens
    "0 ", "1 ", ... one every `--interval-ms` on a fixed schedule, registered as the default
    endpoint (chat style, no tool calling); grounding and the answer cache are off, so each turn
    goes straight from the question to this model;
  - the app: one daphne process, DEBUG off (as in production), its Redis traffic on database 12;
  - the clients: this process, one asyncio loop.

For each wave size N, the websocket wave opens N sockets on N new conversations (50 handshakes at
a time, not timed), then
sends N questions at once; the SSE wave POSTs N streaming `/v1/chat/completions` at once, each with
its own key. Every token's arrival is timed at the client. Printed for each N:
  done       streams that ended normally with every token, in order
  lost/reord tokens missing, and tokens that arrived after a higher-numbered one (0 expected)
  saved      turns in the database with status done and exactly the streamed answer, / N
  gap p50/99 time between consecutive tokens of a stream, over all streams (the peer's interval
             is the floor)
  +p99       the wave's p99 gap minus the 1-stream wave's (the goal: at most 50 ms)
  ttft       question sent -> first token (p50/p99)
  rss        daphne's resident memory before the wave and at its peak; per stream = the difference / N
  cpu        daphne's CPU time (all threads) over the wave / N: what one answer costs the server
  pg         the most connections daphne held to Postgres during the wave
  peer late  p99 of how late the peer sent its tokens (its own jitter on the shared CPU)
  client lag p99 of this process's event loop lag (how far behind the clients themselves were)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
import psycopg  # noqa: E402
import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth.models import Group, User  # noqa: E402
from django.contrib.sessions.backends.db import SessionStore  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.management.sql import emit_post_migrate_signal  # noqa: E402
from django.db import connection, connections  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.typing import Origin  # noqa: E402

from chatbot.accounts.roles import AGENT  # noqa: E402
from chatbot.accounts.services import api_key_create, roles_ensure  # noqa: E402
from chatbot.agent.grounding import assistant_settings  # noqa: E402
from chatbot.models import AssistantSettings, Conversation, ModelEndpoint, Turn  # noqa: E402
from chatbot.runtime.embedded import ensure_services, port_open  # noqa: E402
from tests.benchmarks.servers import daphne_running, free_port, production_env  # noqa: E402

BENCH_DB = "bench_streams"
HOME_DB = settings.DATABASES["default"]["NAME"]
REDIS_DB = 12  # this benchmark's own Redis database (channel layer, limits, Celery's queue)
ENDPOINT = "bench-steady-peer"
OPENING = 50  # websocket handshakes in flight at once while a wave's sockets open
TOKEN_FRAME = re.compile(r'data-frame="token">(.*?)</span>', re.DOTALL)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Deadline(Exception):
    """The run's --timeout passed."""


def _on_alarm(signum: int, frame: object) -> None:
    raise Deadline


# --- setup -------------------------------------------------------------------------------------


def _use_bench_database() -> None:
    """Point this process at a fresh database of the benchmark's own."""
    connections.close_all()
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        cursor.execute(f"CREATE DATABASE {BENCH_DB}")
    connections.close_all()
    settings.DATABASES["default"]["NAME"] = BENCH_DB
    connection.settings_dict["NAME"] = BENCH_DB
    _migrate()


def _migrate() -> None:
    """`migrate`; with migrations from parallel branches not merged yet (two leaves), all leaves
    applied as the graph orders them, which is what the merge migration will do."""
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    if not executor.loader.detect_conflicts():
        call_command("migrate", verbosity=0)
        return
    executor.migrate(executor.loader.graph.leaf_nodes())
    emit_post_migrate_signal(0, False, "default")


def _drop_bench_database() -> None:
    connections.close_all()
    settings.DATABASES["default"]["NAME"] = HOME_DB
    connection.settings_dict["NAME"] = HOME_DB
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
    connections.close_all()


@dataclass(frozen=True)
class Person:
    user_id: int
    session: str
    key: str


def _people(count: int) -> list[Person]:
    """Agents, each signed in (a session as the login view leaves it) and with an API key. Made
    in bulk with unusable passwords: hashing 500 passwords would take minutes of CPU."""
    roles_ensure()
    names = [f"bench-streams-{i:04d}" for i in range(1, count + 1)]
    User.objects.bulk_create(
        [User(username=n, email=f"{n}@example.com", password="!") for n in names]
    )
    users = list(User.objects.filter(username__in=names).order_by("username"))
    agent = Group.objects.get(name=AGENT)
    Through = User.groups.through
    Through.objects.bulk_create([Through(user_id=u.pk, group_id=agent.pk) for u in users])
    people = []
    for user in users:
        store = SessionStore()
        store["_auth_user_id"] = str(user.pk)
        store["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
        store["_auth_user_hash"] = user.get_session_auth_hash()
        store.create()
        key = api_key_create(user=user, name="bench").plaintext
        people.append(Person(user.pk, str(store.session_key), key))
    return people


def _endpoint(peer_url: str, tokens: int) -> None:
    ModelEndpoint.objects.update(is_default=False)
    ModelEndpoint.objects.update_or_create(
        name=ENDPOINT,
        defaults={
            "provider": ModelEndpoint.Provider.OPENAI,
            "base_url": f"{peer_url}/v1",
            "model_id": "steady",
            "style": ModelEndpoint.Style.CHAT,
            "tool_calling": ModelEndpoint.ToolCalling.NONE,
            "max_output_tokens": tokens,
            "is_default": True,
            "enabled": True,
        },
    )
    config = assistant_settings()
    config.grounding = AssistantSettings.Grounding.OFF
    config.cache_enabled = False
    config.save()


@contextlib.contextmanager
def peer_running(port: int, interval_ms: float) -> Iterator[str]:
    log = Path(settings.VAR_DIR) / "log" / "bench-steady-peer.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "tests.benchmarks.steady_peer:app",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
             "--no-access-log", "--backlog", "4096"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "STEADY_PEER_INTERVAL_MS": str(interval_ms),
                 "STEADY_PEER_FIRST_TOKEN_MS": str(interval_ms)},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the steady peer did not start; see {log}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _daphne_env() -> dict[str, str]:
    """Production-like (`servers.production_env`), on this benchmark's database and Redis."""
    return {
        **production_env(database=BENCH_DB, redis_db=REDIS_DB),
        # The product's own limits, not the lifted figure other benchmarks use.
        "RATE_LIMIT_PER_MINUTE": str(settings.RATE_LIMIT_PER_MINUTE),
        # No question is embedded here (grounding and the cache are off).
        "EMBEDDINGS_WARM_ON_START": "0",
    }


# --- measuring ---------------------------------------------------------------------------------


@dataclass
class Stream:
    sent: float = 0.0
    arrivals: list[float] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    ended: bool = False
    error: str = ""


def _numbers(text: str) -> list[int]:
    return [int(part) for part in text.split()]


async def _ws_stream(
    port: int,
    person: Person,
    conversation_id: int,
    opening: asyncio.Semaphore,
    opened: asyncio.Semaphore,
    go: asyncio.Event,
    stream: Stream,
) -> None:
    uri = f"ws://127.0.0.1:{port}/ws/chat/{conversation_id}/"
    origin = Origin(f"http://127.0.0.1:{port}")
    headers = {"Cookie": f"sessionid={person.session}"}
    try:
        async with opening:
            ws = await connect(uri, origin=origin, additional_headers=headers, open_timeout=60)
    finally:
        opened.release()  # opened or failed: either way no longer pending
    async with ws:
        await go.wait()
        stream.sent = time.perf_counter()
        await ws.send(json.dumps({"message": f"Stream {conversation_id}: count for me."}))
        async for frame in ws:
            now = time.perf_counter()
            text = frame if isinstance(frame, str) else frame.decode()
            if 'data-frame="token"' in text:
                for match in TOKEN_FRAME.finditer(text):
                    stream.arrivals.append(now)
                    stream.numbers.extend(_numbers(match.group(1)))
            elif 'data-frame="end"' in text:
                stream.ended = True
                return
            elif 'data-frame="error"' in text:
                stream.error = re.sub(r"<[^>]+>", " ", text).strip()[:200]
                return


async def _sse_stream(
    client: httpx.AsyncClient, port: int, person: Person, go: asyncio.Event, stream: Stream
) -> None:
    body = {
        "model": ENDPOINT,
        "stream": True,
        "messages": [{"role": "user", "content": f"Stream {person.user_id}: count for me."}],
    }
    headers = {"Authorization": f"Bearer {person.key}"}
    await go.wait()
    stream.sent = time.perf_counter()
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    async with client.stream("POST", url, json=body, headers=headers) as reply:
        if reply.status_code != 200:
            stream.error = f"{reply.status_code}: {(await reply.aread())[:200]!r}"
            return
        async for line in reply.aiter_lines():
            now = time.perf_counter()
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                stream.ended = True
                return
            chunk = json.loads(line[6:])
            if "error" in chunk:
                stream.error = str(chunk["error"].get("message"))[:200]
                return
            for choice in chunk.get("choices", []):
                content = choice.get("delta", {}).get("content")
                if content:
                    stream.arrivals.append(now)
                    stream.numbers.extend(_numbers(content))


class Sampler:
    """Daphne's RSS and threads, its Postgres connections and this loop's lag, while a wave runs."""

    def __init__(self, pid: int, dsn: str) -> None:
        self.pid, self.dsn = pid, dsn
        self.rss_mib: list[float] = []
        self.threads: list[int] = []
        self.pg: list[int] = []
        self.lag_ms: list[float] = []

    def rss_now(self) -> float:
        return self._status()[0]

    def cpu_s(self) -> float:
        """daphne's CPU time so far (user + system, all its threads)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _status(self) -> tuple[float, int]:
        rss, threads = 0.0, 0
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
        return rss, threads

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as pg:
            while not stop.is_set():
                rss, threads = self._status()
                self.rss_mib.append(rss)
                self.threads.append(threads)
                row = await (
                    await pg.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                        "AND pid <> pg_backend_pid()",
                        [BENCH_DB],
                    )
                ).fetchone()
                self.pg.append(int(row[0]) if row else 0)
                asked = loop.time()
                await asyncio.sleep(0.05)
                self.lag_ms.append(max(0.0, (loop.time() - asked - 0.05) * 1000))


@dataclass
class Wave:
    kind: str
    size: int
    done: int
    lost: int
    reordered: int
    saved: int
    gaps_ms: list[float]
    ttft_ms: list[float]
    rss_before: float
    rss_peak: float
    cpu_s: float
    pg_peak: int
    threads_peak: int
    peer_late_p99: float
    lag_p99: float
    errors: list[str]


def _check(stream: Stream, tokens: int) -> tuple[int, int]:
    """(tokens lost, tokens that came after a higher-numbered one)."""
    lost = len(set(range(tokens)) - set(stream.numbers))
    reordered, highest = 0, -1
    for number in stream.numbers:
        if number < highest:
            reordered += 1
        highest = max(highest, number)
    return lost, reordered


def _saved(user_ids: list[int], since: Any, expected: str) -> int:
    turns = Turn.objects.filter(conversation__owner_id__in=user_ids, created_at__gte=since)
    return turns.filter(status=Turn.Status.DONE, answer=expected).count()


async def _wave(
    kind: str,
    size: int,
    people: list[Person],
    port: int,
    pid: int,
    peer_url: str,
    tokens: int,
    interval_ms: float,
) -> Wave:
    from asgiref.sync import sync_to_async
    from django.utils import timezone

    group = people[:size]
    since = await sync_to_async(timezone.now)()
    streams = [Stream() for _ in group]
    go = asyncio.Event()
    dsn = (
        f"postgresql://{settings.DATABASES['default']['USER']}@127.0.0.1:"
        f"{settings.DATABASES['default']['PORT']}/{BENCH_DB}"
    )
    sampler = Sampler(pid, dsn)
    limits = httpx.Limits(max_connections=size + 10, max_keepalive_connections=size + 10)
    wave_timeout = 60 + tokens * interval_ms / 1000 * 4
    async with httpx.AsyncClient(timeout=wave_timeout, limits=limits) as client:
        (await client.get(f"{peer_url}/stats")).raise_for_status()  # resets the peer's figures
        if kind == "ws":
            conversations = await sync_to_async(_conversations)(group)
            # Sockets open OPENING at a time (not timed): the claim is about answers streaming
            # at once, not about 500 handshakes in the same instant.
            opening, opened = asyncio.Semaphore(OPENING), asyncio.Semaphore(0)
            runs: list[Awaitable[None]] = [
                _ws_stream(port, person, conversation, opening, opened, go, stream)
                for person, conversation, stream in zip(group, conversations, streams, strict=True)
            ]
        else:
            runs = [
                _sse_stream(client, port, person, go, stream)
                for person, stream in zip(group, streams, strict=True)
            ]
        tasks = [asyncio.ensure_future(asyncio.wait_for(run, wave_timeout)) for run in runs]
        if kind == "ws":
            for _ in group:
                await opened.acquire()
            await asyncio.sleep(0.5)
        rss_before = sampler.rss_now()
        cpu_before = sampler.cpu_s()
        stop = asyncio.Event()
        sampling = asyncio.ensure_future(sampler.run(stop))
        go.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0.3)
        stop.set()
        await sampling
        cpu_used = sampler.cpu_s() - cpu_before
        peer = (await client.get(f"{peer_url}/stats")).json()
    errors = [f"{type(r).__name__}: {r}"[:200] for r in results if isinstance(r, BaseException)]
    errors += [s.error for s in streams if s.error]
    expected = "".join(f"{i} " for i in range(tokens))
    saved = await sync_to_async(_saved)([p.user_id for p in group], since, expected)
    done = lost = reordered = 0
    gaps: list[float] = []
    ttft: list[float] = []
    for stream in streams:
        stream_lost, stream_reordered = _check(stream, tokens)
        lost, reordered = lost + stream_lost, reordered + stream_reordered
        done += stream.ended and not stream_lost and not stream_reordered
        if stream.arrivals:
            ttft.append((stream.arrivals[0] - stream.sent) * 1000)
            gaps += [
                (b - a) * 1000 for a, b in zip(stream.arrivals, stream.arrivals[1:], strict=False)
            ]
    return Wave(
        kind=kind,
        size=size,
        done=done,
        lost=lost,
        reordered=reordered,
        saved=saved,
        gaps_ms=gaps,
        ttft_ms=ttft,
        rss_before=rss_before,
        rss_peak=max(sampler.rss_mib, default=rss_before),
        cpu_s=cpu_used,
        pg_peak=max(sampler.pg, default=0),
        threads_peak=max(sampler.threads, default=0),
        peer_late_p99=float(peer.get("late_p99_ms", 0.0)),
        lag_p99=_percentile(sampler.lag_ms, 0.99),
        errors=errors,
    )


def _conversations(group: list[Person]) -> list[int]:
    made = Conversation.objects.bulk_create(
        [Conversation(owner_id=p.user_id, title="bench") for p in group]
    )
    return [c.pk for c in made]


# --- report ------------------------------------------------------------------------------------


def _report(waves: list[Wave], tokens: int, interval_ms: float) -> None:
    print(
        f"\n{tokens} tokens a stream, one every {interval_ms:g} ms from the peer; "
        "times at the client, ms"
    )
    header = (
        "| kind | N | done | lost/reord | saved | gap p50 | gap p99 | +p99 vs 1 | ttft p50 "
        "| ttft p99 | rss before -> peak (MiB) | per stream | cpu/stream | pg conns | threads | peer late p99 "
        "| client lag p99 |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    baseline: dict[str, float] = {}
    for wave in waves:
        p99 = _percentile(wave.gaps_ms, 0.99)
        if wave.size == 1:
            baseline[wave.kind] = p99
        over = f"{p99 - baseline[wave.kind]:+.1f}" if wave.kind in baseline else "n/a"
        per_stream = (wave.rss_peak - wave.rss_before) * 1024 / wave.size
        print(
            f"| {wave.kind} | {wave.size} | {wave.done}/{wave.size} | {wave.lost}/{wave.reordered} "
            f"| {wave.saved}/{wave.size} | {_percentile(wave.gaps_ms, 0.5):.1f} | {p99:.1f} "
            f"| {over} | {_percentile(wave.ttft_ms, 0.5):.1f} | {_percentile(wave.ttft_ms, 0.99):.1f} "
            f"| {wave.rss_before:.0f} -> {wave.rss_peak:.0f} | {per_stream:.0f} KiB "
            f"| {wave.cpu_s * 1000 / wave.size:.0f} ms "
            f"| {wave.pg_peak} | {wave.threads_peak} | {wave.peer_late_p99:.1f} "
            f"| {wave.lag_p99:.1f} |"
        )
    for wave in waves:
        if wave.errors:
            distinct = sorted(set(wave.errors))
            print(f"{wave.kind} N={wave.size}: {len(wave.errors)} errors, e.g. {distinct[:3]}")


def _bench(
    args: argparse.Namespace, port: int, pid: int, peer_url: str, people: list[Person]
) -> None:
    kinds = ["ws"] if args.ws_only else ["sse"] if args.sse_only else ["ws", "sse"]
    waves: list[Wave] = []

    async def one(kind: str, size: int) -> Wave:
        return await _wave(kind, size, people, port, pid, peer_url, args.tokens, args.interval_ms)

    for kind in kinds:
        asyncio.run(one(kind, 1))  # warm-up: first imports, connections, the route's caches
        for size in args.sizes:
            wave = asyncio.run(one(kind, size))
            waves.append(wave)
            print(
                f"  {kind} N={size}: {wave.done}/{size} done, {wave.saved} saved, "
                f"gap p99 {_percentile(wave.gaps_ms, 0.99):.1f} ms, pg {wave.pg_peak}",
                flush=True,
            )
    _report(waves, args.tokens, args.interval_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1,50,200,500")
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--interval-ms", type=float, default=100.0)
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--ws-only", action="store_true")
    only.add_argument("--sse-only", action="store_true")
    parser.add_argument("--timeout", type=int, default=900, help="seconds for the whole run")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark's database")
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(args.timeout)
    ensure_services()
    _use_bench_database()
    try:
        people = _people(max(args.sizes))
        peer_port, port = free_port(), free_port()
        with peer_running(peer_port, args.interval_ms) as peer_url:
            _endpoint(peer_url, args.tokens)
            connections.close_all()
            with daphne_running(
                port, log_name="bench-streams-daphne.log", env=_daphne_env()
            ) as daphne:
                print(f"daphne pid {daphne.pid} on :{port}, peer on :{peer_port}", flush=True)
                _bench(args, port, daphne.pid, peer_url, people)
    except Deadline:
        print(f"stopped: the run passed --timeout {args.timeout} s", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        signal.alarm(0)
        redis.Redis.from_url(f"{settings.REDIS_URL.rsplit('/', 1)[0]}/{REDIS_DB}").flushdb()
        if not args.keep:
            _drop_bench_database()


if __name__ == "__main__":
    main()
