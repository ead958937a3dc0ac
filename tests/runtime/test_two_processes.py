"""Past one process: two daphne processes (A and B) and two Celery workers on this machine, all
on the test database and the test Redis, and what a person sees across them.

Nothing here runs in the test process but the clients: every answer, reply, ingestion and count
comes from another process, over real TCP (websockets, HTTP) and the shared Postgres and Redis.

What the product does, and so what is checked:
- An answer streams only to the socket that asked (the turn runs in that socket's consumer;
  other tabs are not sent its tokens). Across processes, the saved turn is what counts: a turn
  asked through A is read back through B.
- A reviewer's reply to an escalation is announced on the conversation's group on the Channels
  layer (Redis), so it reaches the asker's socket on whichever process holds it.
- Ingestion progress is written to the source's row by the worker; the knowledge-base page polls
  it (htmx, every second) through whichever process serves the page.
- /metrics counts per process (prometheus_client's default registry): a scraper sums replicas.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction

from chatbot.accounts.services import api_key_create
from chatbot.chat import services as chat_services
from chatbot.knowledge import services as kb_services
from chatbot.models import Chunk, Document, Escalation, ModelEndpoint, Source, Turn
from tests.benchmarks.servers import sessions_opened
from tests.runtime.cluster import (
    CLUSTER_APPLICATION_NAME,
    Cluster,
    ask,
    browser,
    chat_socket,
    cluster_running,
    frames_until,
    post_form,
    request_count,
    tasks_run,
)

pytestmark = pytest.mark.django_db(transaction=True)

INGEST = "knowledge.source_ingest"
PROGRESS = re.compile(r"(\d+) of (\d+) documents")
INGEST_TIMEOUT = 90


@pytest.fixture(scope="module")
def cluster(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Started once for the module (starting four processes is the slow part); each test's rows are
    flushed as usual, the processes only hold idle connections meanwhile."""
    with cluster_running(tmp_path_factory.mktemp("two-processes")) as running:
        yield running


def _answer_text(frames: list[str]) -> str:
    tokens = re.findall(r'data-frame="token">(.*?)</span>', "".join(frames), flags=re.S)
    return "".join(tokens)


def _folder(root: Path, name: str, documents: int) -> Path:
    folder = root / name
    folder.mkdir()
    for i in range(documents):
        (folder / f"page-{i}.md").write_text(f"# {name} page {i}\n\nHow to do {name} step {i}.")
    return folder


def _wait_until_finished(source_ids: list[int], cluster: Cluster) -> list[Source]:
    deadline = time.monotonic() + INGEST_TIMEOUT
    while True:
        sources = list(Source.objects.filter(pk__in=source_ids).order_by("pk"))
        if all(s.status in {Source.Status.DONE, Source.Status.FAILED} for s in sources):
            return sources
        if time.monotonic() > deadline:
            states = [(s.pk, s.status) for s in sources]
            raise AssertionError(f"ingestion unfinished: {states}\n{cluster.report()}")
        time.sleep(0.3)


def test_it_saves_an_answer_streamed_through_a_and_shows_it_through_b(
    cluster: Cluster, alice: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    answer = "The spare toner is in the supply room on floor 3."
    fake_endpoint([answer])
    conversation = chat_services.conversation_create(owner=alice)
    web_a, web_b = cluster.webs

    with chat_socket(web_a, alice, conversation.pk) as sock:
        frames = ask(sock, "Where is the spare toner?")

    assert _answer_text(frames) == answer, "the answer streamed to the socket on A"
    turn = Turn.objects.get(conversation=conversation)
    assert turn.status == Turn.Status.DONE and turn.answer == answer
    with browser(web_b, alice) as b:
        page = b.get(f"/chat/{conversation.pk}/")
    assert page.status_code == 200
    assert "Where is the spare toner?" in page.text and answer in page.text
    assert Turn.objects.filter(conversation=conversation).count() == 1, "saved once"


def test_it_brings_a_reply_sent_through_a_to_the_askers_socket_on_b(
    cluster: Cluster, alice: User, rita: User, fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    fake_endpoint(["Try restarting the router."])
    conversation = chat_services.conversation_create(owner=alice)
    web_a, web_b = cluster.webs
    reply = "I have reset your VPN token; sign in again in five minutes."

    with chat_socket(web_b, alice, conversation.pk) as sock:
        ask(sock, "My VPN token is rejected.")
        turn = Turn.objects.get(conversation=conversation)
        with browser(web_a, alice) as asker:
            escalated = post_form(
                asker,
                f"/chat/{conversation.pk}/",
                {"reason": "Still rejected"},
                action=f"/chat/turns/{turn.pk}/escalate/",
            )
        assert escalated.status_code == 302, escalated.text[:300]
        escalation = Escalation.objects.get(turn=turn)

        with browser(web_a, rita) as reviewer:
            answered = post_form(
                reviewer,
                f"/review/escalations/{escalation.pk}/",
                {"action": "answer", "answer": reply},
            )
        assert answered.status_code == 302, answered.text[:300]

        frames = frames_until(sock, "escalation", containing="reset your VPN token")

    assert f'id="escalate-{turn.pk}"' in frames[-1]
    escalation.refresh_from_db()
    assert escalation.status == Escalation.Status.ANSWERED and escalation.answered_by == rita


def test_it_shows_a_workers_ingestion_progress_on_a_page_served_by_b(
    cluster: Cluster, adam: User, tmp_path: Path
) -> None:
    collection = kb_services.collection_create(name="Printers")
    before = tasks_run(cluster.workers, INGEST)
    source = kb_services.source_create(
        collection=collection, kind="path", location=str(_folder(tmp_path, "printers", 3))
    )
    web_b = cluster.webs[1]

    seen: list[tuple[int, int]] = []
    deadline = time.monotonic() + INGEST_TIMEOUT
    with browser(web_b, adam) as page:
        while True:
            partial = page.get(f"/knowledge/sources/{source.pk}/", headers={"HX-Request": "true"})
            assert partial.status_code == 200
            done, total = map(int, PROGRESS.search(partial.text).groups())  # type: ignore[union-attr]
            if not seen or seen[-1] != (done, total):
                seen.append((done, total))
            if "badge-ok" in partial.text or "badge-error" in partial.text:
                break
            assert time.monotonic() < deadline, f"still ingesting: {seen}\n{cluster.report()}"
            time.sleep(0.2)

    assert "Ingested" in partial.text and "hx-trigger" not in partial.text, "polling stops"
    assert seen[-1] == (3, 3)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen), "progress only goes forward"
    after = tasks_run(cluster.workers, INGEST)
    assert sum(after.values()) - sum(before.values()) == 1, "one worker ran it, once"


def test_it_splits_a_batch_of_jobs_across_both_workers_and_runs_each_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    sources_count, documents_each = 6, 2
    collection = kb_services.collection_create(name="Batch")
    before = tasks_run(cluster.workers, INGEST)
    folders = [_folder(tmp_path, f"topic{i}", documents_each) for i in range(sources_count)]

    # One transaction: every job is queued at the same moment, when it commits.
    with transaction.atomic():
        sources = [
            kb_services.source_create(collection=collection, kind="path", location=str(f))
            for f in folders
        ]

    finished = _wait_until_finished([s.pk for s in sources], cluster)
    after = tasks_run(cluster.workers, INGEST)
    ran = {name: after[name] - before[name] for name in cluster.workers}

    assert [s.status for s in finished] == [Source.Status.DONE] * sources_count, [
        s.log for s in finished
    ]
    assert sum(ran.values()) == sources_count, f"each job ran exactly once: {ran}"
    assert all(count >= 1 for count in ran.values()), f"both workers took jobs: {ran}"
    documents = Document.objects.filter(collection=collection)
    assert documents.count() == sources_count * documents_each, "no duplicate documents"
    assert documents.values("source", "external_id").distinct().count() == documents.count()
    assert Chunk.objects.filter(document__collection=collection).count() == sum(
        s.chunks_done for s in finished
    )
    assert all(s.documents_done == documents_each for s in finished)


def test_it_counts_requests_per_process_and_the_sum_is_what_was_sent(cluster: Cluster) -> None:
    web_a, web_b = cluster.webs
    before = {url: request_count(url, route="healthz") for url in cluster.webs}
    sent = {web_a: 3, web_b: 5}

    for url, times in sent.items():
        for _ in range(times):
            assert httpx.get(f"{url}/healthz", timeout=30, trust_env=False).status_code == 200

    counted = {url: request_count(url, route="healthz") - before[url] for url in cluster.webs}
    assert counted == {web_a: 3.0, web_b: 5.0}, "each process counts only what it served"
    assert sum(counted.values()) == sum(sent.values())


def test_pages_borrow_a_pooled_connection_instead_of_opening_one_each(
    cluster: Cluster, adam: User
) -> None:
    """daphne runs each synchronous view on a thread of that request's own, which opened a new
    Postgres connection per request; the web processes now take one from their pool (DB_POOL)."""
    requests = 40
    with browser(cluster.webs[0], adam) as page:
        assert page.get("/knowledge/").status_code == 200  # the pool has what it needs
        before = sessions_opened()
        for _ in range(requests):
            assert page.get("/knowledge/").status_code == 200
        opened = sessions_opened() - before
    # The pool's own first connections may still be counted in this window (a few); without the
    # pool it was one a page.
    assert opened <= requests // 5, f"{opened} connections opened for {requests} pages"


def _drop_the_clusters_connections() -> int:
    """What a failover or a restart of the database server does to every connection of the
    cluster's processes (named by libpq's PGAPPNAME; the test process's own are left alone)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s",
            [CLUSTER_APPLICATION_NAME],
        )
        row = cursor.fetchone()
    return int(row[0])


# Last in the module: it breaks every process's connections, which the next tests would meet.
def test_pages_and_api_calls_survive_the_database_dropping_every_connection(
    cluster: Cluster, alice: User
) -> None:
    """A pooled connection is checked as a request borrows it, and the one a database thread
    keeps is checked after it sat idle: a connection broken meanwhile is replaced, never used."""
    web = cluster.webs[0]
    key = api_key_create(user=alice, name="failover").plaintext
    models = {"Authorization": f"Bearer {key}"}
    with browser(web, alice) as page:
        assert page.get("/chat/").status_code == 200
        assert page.get("/v1/models", headers=models).status_code == 200

        assert _drop_the_clusters_connections() > 0
        time.sleep(1.2)  # past chatbot.runtime.db.HEALTH_CHECK_IDLE_S

        assert page.get("/chat/").status_code == 200, cluster.report()
        assert page.get("/v1/models", headers=models).status_code == 200, cluster.report()
