"""Database work from async code (chatbot.runtime.db): a thread's connection is health-checked
before a call only after it sat idle, and a connection broken while idle is replaced, not failed on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import connection, transaction

from chatbot.chat import services
from chatbot.models import Turn
from chatbot.runtime import db
from chatbot.runtime.db import db_sync_to_async

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def one_thread(settings: pytest.FixtureRequest) -> Iterator[None]:
    """One database thread, so consecutive calls share a connection."""
    settings.DB_THREADS = 1  # type: ignore[attr-defined]
    db._executor.cache_clear()
    yield
    db._executor().shutdown(wait=True)
    db._executor.cache_clear()


def _check_pending_then_pid() -> tuple[bool, int]:
    """Whether a health check is due before this call's first query, and the backend serving it."""
    done = connection.health_check_done  # type: ignore[attr-defined]
    pending = connection.connection is not None and not done
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return pending, int(cursor.fetchone()[0])


def _terminate(pid: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])


async def test_it_skips_the_health_check_between_calls_in_quick_succession(
    one_thread: None,
) -> None:
    _, first = await db_sync_to_async(_check_pending_then_pid)()
    pending, second = await db_sync_to_async(_check_pending_then_pid)()

    assert second == first, "the thread kept its connection"
    assert pending is False, "no SELECT 1 before a call right after another"


async def test_it_checks_and_replaces_a_connection_broken_while_idle(
    one_thread: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, first = await db_sync_to_async(_check_pending_then_pid)()
    await sync_to_async(_terminate)(first)  # from another connection: the thread's is broken
    monkeypatch.setattr(db, "HEALTH_CHECK_IDLE_S", 0.0)  # any pause counts as idle

    pending, second = await db_sync_to_async(_check_pending_then_pid)()

    assert pending is True, "checked after sitting idle"
    assert second != first, "the broken connection was replaced and the call succeeded"


def _synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return str(cursor.fetchone()[0])


def test_commit_unflushed_is_one_transaction_that_does_not_wait_for_the_disk() -> None:
    owner = User.objects.create_user("unflushed")
    conversation = services.conversation_create(owner=owner)
    assert _synchronous_commit() == "on"
    with db.commit_unflushed():
        assert connection.in_atomic_block
        assert _synchronous_commit() == "off"
    assert _synchronous_commit() == "on", "SET LOCAL: the next transaction waits for the disk"
    turn = services.turn_create(conversation=conversation, user_text="Where is my parcel?")
    assert Turn.objects.get(pk=turn.pk).user_text == "Where is my parcel?"
    conversation.refresh_from_db()
    assert conversation.title == "Where is my parcel?"

    # Inside someone else's transaction it adds nothing: their commit decides.
    with transaction.atomic(), db.commit_unflushed():
        assert _synchronous_commit() == "on"

    # A failure inside rolls the whole step back (the turn and the conversation's title alike).
    with pytest.raises(RuntimeError), db.commit_unflushed():
        Turn.objects.create(conversation=conversation, user_text="lost")
        raise RuntimeError
    assert not Turn.objects.filter(user_text="lost").exists()
