"""Time to first token of an answer from the answer cache versus a miss, in one run.

    .venv/bin/python tests/benchmarks/bench_cache.py [--rounds 20] [--model local|fake] [--keep]

Data: a database of its own (`bench_cache`, beside the dev database; the embedded services start
if needed), migrated, with the demo knowledge base ingested and grounding "preferred", so every
miss embeds the question, runs the hybrid search and asks the model with numbered passages. Celery
runs eagerly in this process, so what a turn queues happens here, as a worker would do it: the
real judges run after each miss and, when all pass, evaluation stores the answer in the cache
(the production write path; an answer the judges fail is stored directly, and counted, so the hit
can still be timed; hits go unjudged here, see `_hits_unjudged`). Nothing reaches the dev broker
or the dev database.

Model: `--model local` (default) is the bundled Gemma 3 270M behind llama.cpp's OpenAI-compatible
server (reused when it answers at settings.LOCAL_MODEL_URL, else started); `--model fake` is
langchain-core's fake chat model with a 60 ms sleep before each piece (a stand-in for the local
model's first-token time when it cannot run). The output says which.

For each round, for one of five questions in turn, all through `turn_run` (what the websocket
consumer and the API call), each in a fresh conversation, as the same agent:
  miss:     the cache emptied first, then the question (lookup, retrieval, the model);
  exact:    the same question again, worded with other case and spacing;
  semantic: a rewording of it (cosine similarity >= the 0.95 default threshold).
Time to first token: from calling `turn_run` (the turn is saved, as every caller does first) to
the first piece handed to `emit`. One warm-up round is left out.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")

import django  # noqa: E402

django.setup()

from asgiref.sync import sync_to_async  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, connections  # noqa: E402

from chatbot import hooks  # noqa: E402
from chatbot.accounts.roles import AGENT  # noqa: E402
from chatbot.accounts.services import demo_users_ensure, user_create  # noqa: E402
from chatbot.agent.cache import answer_cache_store  # noqa: E402
from chatbot.agent.grounding import assistant_settings  # noqa: E402
from chatbot.agent.turn import turn_run  # noqa: E402
from chatbot.celery import app as celery_app  # noqa: E402
from chatbot.chat import services  # noqa: E402
from chatbot.knowledge.demo import demo_knowledge_ensure  # noqa: E402
from chatbot.knowledge.ingest import source_ingest  # noqa: E402
from chatbot.llm.catalogue import local_endpoint_ensure  # noqa: E402
from chatbot.llm.embeddings import embeddings_warm  # noqa: E402
from chatbot.models import AnswerCacheEntry, AssistantSettings, ModelEndpoint, Source, Turn  # noqa: E402
from chatbot.runtime.embedded import ensure_services  # noqa: E402
from evaluation.hooks import on_turn_finished  # noqa: E402
from evaluation.services import judges_ensure  # noqa: E402

BENCH_DB = "bench_cache"
HOME_DB = settings.DATABASES["default"]["NAME"]
BENCH_USER = "bench-cache-agent"
FAKE_SLEEP_S = 0.06
# (question, the same with other case and spacing, a rewording at cosine similarity >= 0.95)
QUESTIONS = [
    ("How long is the password reset link valid?",
     "how long is the password  reset link valid",
     "How long is the password reset link valid for?"),
    ("How do I unlock a customer's account after too many failed logins?",
     "How do I unlock a customer's account after too many failed logins",
     "How can I unlock a customer's account after too many failed logins?"),
    ("Who approves a refund of 500 EUR?",
     "who approves a refund of 500 eur?",
     "Who approves a 500 EUR refund?"),
    ("What should I do when the VPN client says the certificate has expired?",
     "What should I do when the VPN client says the certificate has expired ?",
     "What should I do if the VPN client says the certificate has expired?"),
    ("How quickly does the second line answer a P2 ticket?",
     "How quickly does the second line answer a P2 ticket",
     "How quickly does second line answer a P2 ticket?"),
]  # fmt: skip


def _use_bench_database(*, fresh: bool) -> None:
    """Point the default connection at the benchmark's own database, creating it if needed."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB])
        exists = cursor.fetchone() is not None
    connection.close()
    if exists and fresh:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE {BENCH_DB} WITH (FORCE)")
        exists = False
    if not exists:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {BENCH_DB}")
    connections.close_all()
    settings.DATABASES["default"]["NAME"] = BENCH_DB
    connection.settings_dict["NAME"] = BENCH_DB
    call_command("migrate", verbosity=0)


def _drop_bench_database() -> None:
    connections.close_all()
    settings.DATABASES["default"]["NAME"] = HOME_DB
    connection.settings_dict["NAME"] = HOME_DB
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


def _setup(model: str) -> ModelEndpoint:
    demo_users_ensure(password="bench-password-1")
    judges_ensure()
    demo_knowledge_ensure()
    for source in Source.objects.exclude(status=Source.Status.DONE):
        source_ingest(source_id=source.pk)
    config = assistant_settings()
    config.grounding = AssistantSettings.Grounding.PREFERRED
    config.save()
    if model == "fake":
        endpoint, _ = ModelEndpoint.objects.update_or_create(
            name="bench-fake",
            defaults={
                "provider": ModelEndpoint.Provider.FAKE,
                "model_id": "fake-list-chat",
                "style": ModelEndpoint.Style.CHAT,
                "options": {
                    "responses": ["The reset link expires after 30 minutes [1]."],
                    "sleep": FAKE_SLEEP_S,
                },
            },
        )
    else:
        endpoint = local_endpoint_ensure()
    ModelEndpoint.objects.exclude(pk=endpoint.pk).update(is_default=False)
    ModelEndpoint.objects.filter(pk=endpoint.pk).update(is_default=True, enabled=True)
    endpoint.refresh_from_db()
    return endpoint


@contextmanager
def _model_server(endpoint: ModelEndpoint, model: str) -> Iterator[None]:
    if model == "fake":
        yield
        return
    from tests.benchmarks.bench_ttft import model_server_running

    with model_server_running(endpoint.base_url):
        yield


@contextmanager
def _hits_unjudged() -> Iterator[None]:
    """Hits are judged in production too, and a judge failing one retires its entry: with a
    model whose answers the judges fail (the fake's fixed sentence, the small base model's
    uncited answers), the exact hit's judging would end the semantic hit that follows. What is
    timed here comes before any judging, so the hits go unjudged in this run."""
    hooks.turn_finished.disconnect(dispatch_uid="evaluation.judge")
    try:
        yield
    finally:
        hooks.turn_finished.connect(on_turn_finished, dispatch_uid="evaluation.judge")


async def _ask(user: User, question: str) -> tuple[float, Turn]:
    """Milliseconds from calling turn_run to the first piece, and the finished turn."""
    conversation = await sync_to_async(services.conversation_create)(owner=user)
    turn = await sync_to_async(services.turn_create)(conversation=conversation, user_text=question)
    first: list[float] = []

    async def emit(_: str) -> None:
        if not first:
            first.append(time.perf_counter())

    started = time.perf_counter()
    await turn_run(turn_id=turn.pk, emit=emit)
    if not first:
        raise SystemExit(f"turn {turn.pk} streamed nothing")
    return (first[0] - started) * 1000, await Turn.objects.aget(pk=turn.pk)


def _store_unless_judged(turn: Turn) -> bool:
    """True when the judges (run eagerly as the turn finished) passed the answer and evaluation
    stored it; otherwise store it directly so the hit can be timed."""
    if AnswerCacheEntry.objects.filter(source_turn_id=turn.pk).exists():
        return True
    if answer_cache_store(turn_id=turn.pk) is None:
        raise SystemExit(f"turn {turn.pk} cannot be cached (answer: {turn.answer[:80]!r})")
    return False


async def bench(rounds: int) -> dict[str, list[float]]:
    user = await User.objects.aget(username=BENCH_USER)
    times: dict[str, list[float]] = {"miss": [], "exact": [], "semantic": []}
    judged = 0
    for i in range(rounds + 1):
        question, same, reworded = QUESTIONS[i % len(QUESTIONS)]
        await AnswerCacheEntry.objects.all().adelete()
        miss_ms, miss = await _ask(user, question)
        if miss.cache_result != Turn.Cache.MISS or miss.status != Turn.Status.DONE:
            raise SystemExit(f"expected a miss, got {miss.cache_result!r} ({miss.error})")
        judged += await sync_to_async(_store_unless_judged)(miss)
        with _hits_unjudged():
            exact_ms, exact = await _ask(user, same)
            semantic_ms, semantic = await _ask(user, reworded)
        if exact.cache_result != Turn.Cache.EXACT or semantic.cache_result != Turn.Cache.SEMANTIC:
            raise SystemExit(
                f"expected hits, got {exact.cache_result!r} and {semantic.cache_result!r}"
            )
        if i == 0:
            continue  # warm-up
        times["miss"].append(miss_ms)
        times["exact"].append(exact_ms)
        times["semantic"].append(semantic_ms)
    print(f"answers stored by the judges' write path: {judged} of {rounds + 1}"
          " (the rest stored directly, to time their hits)")  # fmt: skip
    return times


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _report(times: dict[str, list[float]], model: str) -> None:
    what = (
        "Gemma 3 270M (llama.cpp server, grounded prompt)"
        if model == "local"
        else f"fake chat model, {FAKE_SLEEP_S * 1000:.0f} ms before each piece"
    )
    print(f"\nTime to first token through turn_run, {len(times['miss'])} rounds; model: {what}")
    for name, label in (("miss", "miss (retrieval + model)"), ("exact", "exact hit"),
                        ("semantic", "semantic hit (embeds)")):  # fmt: skip
        values = times[name]
        print(f"{label:<28} p50 {statistics.median(values):8.1f} ms   "
              f"p90 {_percentile(values, 0.9):8.1f} ms")  # fmt: skip
    miss = statistics.median(times["miss"])
    if model == "fake":
        print("(the miss is the fake's fixed sleep plus our stack: the ratios scale with the sleep"
              " chosen, so only --model local measures the goal's ratio)")  # fmt: skip
    for name in ("exact", "semantic"):
        hit = statistics.median(times[name])
        verdict = "meets" if hit <= 30 and miss / hit >= 20 else "misses"
        print(f"{name} hit: {miss / hit:6.1f}x faster than a miss (p50); "
              f"{verdict} the goal (<= 30 ms and >= 20x)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--model", choices=("local", "fake"), default="local")
    parser.add_argument("--keep", action="store_true", help="leave the bench_cache database")
    args = parser.parse_args()
    model = args.model
    if model == "local" and not Path(settings.LOCAL_MODEL_PATH).exists():
        print(f"no local model at {settings.LOCAL_MODEL_PATH}: using the fake chat model instead")
        model = "fake"

    ensure_services()
    logging.getLogger("celery").setLevel(logging.WARNING)
    # What a turn queues (judging, clean-ups) runs here, against this database, not on a worker.
    celery_app.conf.task_always_eager = True
    _use_bench_database(fresh=not args.keep)
    try:
        endpoint = _setup(model)
        user_create(username=BENCH_USER, password="bench-password-1", role=AGENT)
        embeddings_warm().join()
        with _model_server(endpoint, model):
            times = asyncio.run(bench(args.rounds))
        _report(times, model)
    finally:
        if not args.keep:
            _drop_bench_database()


if __name__ == "__main__":
    main()
