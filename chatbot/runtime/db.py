"""Database work from async code (the chat socket, streaming API views, the turn loop) on a
bounded set of threads, so the number of Postgres connections does not grow with the answers
streaming at once.

asgiref's `sync_to_async` is thread-sensitive by default. Outside an HTTP request (every websocket
consumer) that means ONE thread for the whole process: answers starting together queue behind each
other's queries (tests/benchmarks/bench_streams.py measured time to first token 0.9 s with 20
sockets asking at once, 20 s with 200), and daphne closed websocket handshakes that waited longer
than its connect timeout. Inside an HTTP request it means a thread of that request's own, which
opens a connection of its own: 200 streamed API answers asked at once opened up to 198 of the
embedded server's 200, and some requests failed with "too many clients".

`db_sync_to_async` runs the call on one of `DB_THREADS` threads shared by the process instead
(with it, 500 answers at once held at most 11 connections, over websockets or the API).
Each keeps its connection between calls (CONN_MAX_AGE), so this work holds at most DB_THREADS
connections however many answers stream; a connection past its age or broken is closed around
each call, as channels' `database_sync_to_async` does. In a web process with DB_POOL on, each
thread borrows one connection from the pool and keeps it in the same way. The health check
(CONN_HEALTH_CHECKS, a `SELECT 1` before the first query after that; for a pooled connection,
`is_usable()` here) runs only when the thread's connection has been idle for
HEALTH_CHECK_IDLE_S: under load a thread runs call after call, and checking before each one
doubled the round trips of the short calls an answer makes (a third of the database threads' time
in a profile of 200 streams). Use it for calls that are complete in
themselves (no transaction or thread-local state carried from one call to the next): reads, and
writes that commit. `request_connection_release` gives back the connection an HTTP request's own
thread opened (the API key check) before the request goes on to stream for seconds.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import AsyncToSync, SyncToAsync, sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection, connections, transaction

P = ParamSpec("P")
R = TypeVar("R")


@functools.cache
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=settings.DB_THREADS, thread_name_prefix="db")


# A forked child (a server started by fork, a test's live server) inherits the executor but not
# its threads: every call would wait forever. It starts a pool of its own on first use instead.
os.register_at_fork(after_in_child=_executor.cache_clear)


# A connection used this recently is not health-checked again before the next call.
HEALTH_CHECK_IDLE_S = 1.0
_last_used = threading.local()


def _pooled(conn: Any) -> bool:
    return conn.connection is not None and getattr(conn, "pool", None) is not None


def _before_call() -> None:
    close_old_connections()  # past its age, or broken by an error: closed (and opened anew)
    if time.monotonic() - getattr(_last_used, "at", float("-inf")) < HEALTH_CHECK_IDLE_S:
        for conn in connections.all(initialized_only=True):
            conn.health_check_done = True  # type: ignore[attr-defined]
        return
    for conn in connections.all(initialized_only=True):
        # Django checks a pooled connection only when it is borrowed (the pool's check); the one
        # this thread keeps (below) is checked here after an idle spell, as a persistent one is.
        if _pooled(conn) and not conn.is_usable():
            conn.close()


def _after_call() -> None:
    for conn in connections.all(initialized_only=True):
        if _pooled(conn):
            # From the pool (settings.DB_POOL, CONN_MAX_AGE 0): kept by this thread as a
            # persistent connection would be, still closed below when broken. Giving it back
            # after every call and borrowing again cost a web request's hops more than the pool
            # saved them (GET /v1/models 6.3 -> 7.1 ms p50, two hops).
            conn.close_at = None
    close_old_connections()
    _last_used.at = time.monotonic()


class _DatabaseHop(SyncToAsync[P, R]):
    def thread_handler(self, loop: Any, *args: Any, **kwargs: Any) -> Any:
        _before_call()
        try:
            return super().thread_handler(loop, *args, **kwargs)
        finally:
            _after_call()


def db_sync_to_async(func: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """`func` as a coroutine function that runs on the process's database threads, unless a
    synchronous caller waits above (`async_to_sync`: a Celery task, a replay, Django's sync test
    client): then on that caller's thread, as `sync_to_async` would, inside its transaction."""
    hop = _DatabaseHop(func, thread_sensitive=False, executor=_executor())
    inline = sync_to_async(func)

    @functools.wraps(func)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        # asgiref's own test for "a sync thread above" (SyncToAsync.__call__ makes it too).
        if getattr(AsyncToSync.executors, "current", None) is not None:
            return await inline(*args, **kwargs)
        return await hop(*args, **kwargs)

    return call


def _release() -> None:
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close()


async def request_connection_release() -> None:
    """Close the connections of the current HTTP request's thread (none inside a transaction).
    Under ASGI every request runs its sync code on a thread of its own, so no later request could
    reuse them anyway."""
    await sync_to_async(_release)()


@contextmanager
def commit_unflushed() -> Iterator[None]:
    """A transaction whose commit does not wait for its WAL to reach the disk (Postgres's
    `synchronous_commit = off` for this transaction only): for writes on the path of an answer's
    first token, where a flush cost about 4 ms on the 2-core VM the benchmarks run on, and holds one
    of the DB_THREADS connections while it waits.

    What this gives up is narrow: the commit is visible at once and Postgres's WAL writer flushes
    it within three `wal_writer_delay`s (600 ms by default); only a crash of the database server
    itself inside that window loses it, never a crash of ours, and never partially (no
    corruption). A later ordinary commit flushes everything before it, so the turn's final save
    makes the question durable with it. Inside a transaction already open it adds nothing (the
    outer transaction's commit decides), so it can never weaken someone else's."""
    if connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
        yield
