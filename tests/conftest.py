"""The test setup starts the real services (embedded Postgres with pgvector and Redis, or the ones
`DATABASE_URL` / `REDIS_URL` name) and provides the fixed cast: alice (agent), rita (reviewer),
adam (admin) and nora (no role)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import TestWorkController, start_worker
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from chatbot.accounts.services import demo_users_ensure
from chatbot.celery import app as celery_app
from chatbot.models import ModelEndpoint
from chatbot.runtime.embedded import ensure_services

PASSWORD = "cast-password-1"


@pytest.fixture(scope="session", autouse=True)
def _services() -> None:
    ensure_services()
    redis.Redis.from_url(settings.CACHES["default"]["LOCATION"]).flushdb()


@pytest.fixture(autouse=True)
def _grounding_off_unless_asked(settings: Any) -> None:
    """Most tests exercise streaming, routing and storage, not the knowledge base: they run with
    grounding off. Tests of grounded answers save `AssistantSettings` with the mode they need
    (see tests/agent/test_grounded.py); production defaults to "required"."""
    settings.ASSISTANT_GROUNDING_DEFAULT = "off"


@pytest.fixture(scope="session")
def django_db_modify_db_settings() -> None:
    # Runs before pytest-django creates the test database: the server must be up by then.
    ensure_services()


@pytest.fixture(scope="session")
def reporting_db() -> str:
    """The test run's demo reporting database (settings.REPORTING_DEMO_DATABASE, beside the test
    database) with its read-only role; returns that role's DSN."""
    from chatbot.agent.tools.reporting_demo import reader_dsn, reporting_demo_ensure

    reporting_demo_ensure(database=settings.REPORTING_DEMO_DATABASE)
    return reader_dsn(settings.REPORTING_DEMO_DATABASE)


@pytest.fixture
def cast(db: None) -> dict[str, User]:
    return {u.username: u for u in demo_users_ensure(password=PASSWORD)}


@pytest.fixture
def alice(cast: dict[str, User]) -> User:
    return cast["alice"]


@pytest.fixture
def rita(cast: dict[str, User]) -> User:
    return cast["rita"]


@pytest.fixture
def adam(cast: dict[str, User]) -> User:
    return cast["adam"]


@pytest.fixture
def nora(cast: dict[str, User]) -> User:
    return cast["nora"]


@pytest.fixture
def client_as() -> Callable[[User], Client]:
    def make(user: User) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def fake_endpoint(db: None) -> Callable[..., ModelEndpoint]:
    """A catalogue entry backed by langchain-core's fake chat model (the network-edge fake)."""

    def make(
        responses: list[str] | None = None,
        *,
        name: str = "fake-model",
        default: bool = True,
        sleep: float | None = None,
        error_on_chunk: int | None = None,
        **fields: Any,
    ) -> ModelEndpoint:
        options: dict[str, Any] = {"responses": responses or ["Hello **world**."]}
        if sleep is not None:
            options["sleep"] = sleep
        if error_on_chunk is not None:
            options["error_on_chunk"] = error_on_chunk
        if default:
            ModelEndpoint.objects.filter(is_default=True).update(is_default=False)
        endpoint, _ = ModelEndpoint.objects.update_or_create(
            name=name,
            defaults={
                "provider": ModelEndpoint.Provider.FAKE,
                "model_id": "fake-list-chat",
                "style": ModelEndpoint.Style.CHAT,
                "is_default": default,
                "options": options,
                "price_input_per_mtok": fields.pop("price_input_per_mtok", 1),
                "price_output_per_mtok": fields.pop("price_output_per_mtok", 2),
                **fields,
            },
        )
        return endpoint

    return make


@pytest.fixture
def worker() -> Iterator[TestWorkController]:
    """A real Celery worker in this process, on the test Redis (one thread, no pool). The broker's
    queues are emptied first: a message an earlier test left there (a view that queued a job in a
    test without a worker, a message a stopped worker handed back) would otherwise run here,
    in a test that does not expect it."""
    assert celery_app.conf.broker_url == settings.CELERY_BROKER_URL, (
        "the worker must use the test Redis"
    )
    celery_app.control.purge()
    with start_worker(celery_app, perform_ping_check=False, pool="solo", shutdown_timeout=30) as w:
        yield w


@pytest.fixture
def queued_tasks() -> Callable[[], list[str]]:
    """Takes every message waiting on the test broker's queues off them (no worker runs them) and
    returns their task names: what a test that has no worker asserts was submitted."""

    def take() -> list[str]:
        names: list[str] = []
        with celery_app.connection_for_read() as connection:
            for queue in celery_app.amqp.queues.values():
                waiting = connection.SimpleQueue(queue, no_ack=True)
                try:
                    while True:
                        names.append(waiting.get(block=False).headers["task"])
                except waiting.Empty:
                    pass
                finally:
                    waiting.close()
        return names

    return take
