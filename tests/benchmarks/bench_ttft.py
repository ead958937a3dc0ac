"""Time to first token: our websocket stack (or our /v1 API) versus the same model server directly.

    .venv/bin/python tests/benchmarks/bench_ttft.py [--rounds 30] [--v1]

Uses the dev database (embedded services) and the local model server (reused when it answers at
settings.LOCAL_MODEL_URL, else started). Starts daphne on a free port, logs in through the login form
as a benchmark agent, then, interleaved, for each round and the same question:
  ours:     open ws://.../ws/chat/<new conversation>/, send {"message": q}, time to the first frame
            with data-frame="token" (the connection is opened before the clock starts, as a browser
            holds it open);
  baseline: POST the same rendered prompt (with the same numbered knowledge-base passages our stack
            retrieved for it) to the model server's /v1/completions with stream=true, time to the
            first SSE chunk with text.
So "ours" includes everything a grounded answer costs before the model: the question saved, the
history read, the query embedded, the hybrid search, the route. The run seeds the demo knowledge
base (deploy/demo-kb) when missing and sets grounding to "preferred" for its duration, so every
question reaches the model (a "don't know" answer would skip it and flatter our figure). Tools
beyond the knowledge-base search are off for every run (`make run` turns the demo's on; with one,
an agent's turn first asks the model which step to take), so the plain pipeline is what is timed.
Both drain the whole answer, so each request starts on an idle model server, and another question
is sent before each measured one so neither side finds its question in the server's prompt cache.

`--no-grounding` keeps the websocket but turns grounding and the answer cache off for the run, so
the difference from the default run is what the retrieval step costs.
`--v1` measures our OpenAI-compatible API instead, as a program calls it: grounding and the answer
cache off for the run (so the turn sends the caller's messages, as a gateway would), and
  ours:     POST /v1/chat/completions with stream=true and the benchmark agent's API key
            (Authorization: Bearer), time to the first SSE chunk whose delta has content;
  baseline: the prompt our stack rendered from those messages, POSTed to the model server as above.
The connection to daphne is kept alive between rounds, as a client's connection pool does.
Then `GET /v1/models`, ours against the model server's own, MODELS_REQUESTS times alternated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
from asgiref.sync import sync_to_async  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.typing import Origin  # noqa: E402

from chatbot.accounts.roles import AGENT  # noqa: E402
from chatbot.accounts.services import api_key_create, user_create  # noqa: E402
from chatbot.agent.grounding import assistant_settings  # noqa: E402
from chatbot.agent.prepare import prompt_for_turn  # noqa: E402
from chatbot.agent.turn import _prepare  # noqa: E402
from chatbot.api.openai_schemas import ChatMessageIn, prompt_from  # noqa: E402
from chatbot.chat import services  # noqa: E402
from chatbot.knowledge.demo import demo_knowledge_ensure  # noqa: E402
from chatbot.knowledge.ingest import source_ingest  # noqa: E402
from chatbot.llm.catalogue import local_endpoint_ensure  # noqa: E402
from chatbot.llm.prompts import render_completion  # noqa: E402
from chatbot.models import (  # noqa: E402
    ApiKey,
    AssistantSettings,
    Conversation,
    ModelEndpoint,
    Source,
    Span,
    ToolSetting,
    Turn,
)
from chatbot.runtime import model_server  # noqa: E402
from chatbot.runtime.embedded import ensure_services, port_open  # noqa: E402
from chatbot.telemetry.tracing import Tracer  # noqa: E402
from tests.benchmarks.servers import daphne_running, free_port, production_env  # noqa: E402

BENCH_USER = "bench-agent"
BENCH_PASSWORD = "bench-password-1"
FLUSH_QUESTION = "Which team owns the billing system?"
QUESTIONS = [
    "How long is the password reset link valid?",
    "How do I unlock a customer's account after too many failed logins?",
    "Who approves a refund of 500 EUR?",
    "What should I do when the VPN client says the certificate has expired?",
    "How quickly does the second line answer a P2 ticket?",
]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextmanager
def model_server_running(url: str) -> Iterator[None]:
    if model_server.is_ready(url):
        print(f"reusing the model server at {url}")
        yield
        return
    port = settings.LOCAL_MODEL_PORT
    if url != settings.LOCAL_MODEL_URL or port_open("127.0.0.1", port):
        raise SystemExit(f"the catalogue's local model at {url} does not answer; start `make run`")
    log = Path(settings.VAR_DIR) / "log" / "bench-model-server.log"
    process = model_server.start(
        model_path=Path(settings.LOCAL_MODEL_PATH),
        port=port,
        log_path=log,
        n_ctx=settings.LOCAL_MODEL_CONTEXT,
    )
    try:
        model_server.wait_ready(url, process=process)
        print(f"started the model server at {url} (log {log})")
        yield
    finally:
        model_server.stop(process)


@contextmanager
def local_endpoint_as_default() -> Iterator[ModelEndpoint]:
    """The turn router picks the default endpoint: make it the local model for the run only."""
    endpoint = local_endpoint_ensure()
    previous = ModelEndpoint.objects.filter(is_default=True).exclude(pk=endpoint.pk).first()
    was_enabled = endpoint.enabled
    if previous is not None:
        ModelEndpoint.objects.filter(pk=previous.pk).update(is_default=False)
    ModelEndpoint.objects.filter(pk=endpoint.pk).update(is_default=True, enabled=True)
    try:
        yield endpoint
    finally:
        ModelEndpoint.objects.filter(pk=endpoint.pk).update(
            is_default=previous is None, enabled=was_enabled
        )
        if previous is not None:
            ModelEndpoint.objects.filter(pk=previous.pk).update(is_default=True)


def login(base: str) -> str:
    """Log in through the real form; returns the session cookie."""
    with httpx.Client(base_url=base) as client:
        page = client.get("/accounts/login/")
        page.raise_for_status()
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        if match is None:
            raise SystemExit("no CSRF token on the login page")
        reply = client.post(
            "/accounts/login/",
            data={"username": BENCH_USER, "password": BENCH_PASSWORD,
                  "csrfmiddlewaretoken": match.group(1)},
            headers={"Referer": f"{base}/accounts/login/"},
        )  # fmt: skip
        session = client.cookies.get("sessionid")
        if reply.status_code != 302 or not session:
            raise SystemExit(f"login failed ({reply.status_code})")
        return session


async def ours(port: int, session: str, user: User, question: str) -> tuple[float, Turn]:
    """Seconds from sending the question to the first token frame, and the finished turn."""
    conversation = await sync_to_async(services.conversation_create)(owner=user)
    uri = f"ws://127.0.0.1:{port}/ws/chat/{conversation.pk}/"
    origin = Origin(f"http://127.0.0.1:{port}")
    headers = {"Cookie": f"sessionid={session}"}
    async with connect(uri, origin=origin, additional_headers=headers) as ws:
        started = time.perf_counter()
        await ws.send(json.dumps({"message": question}))
        ttft: float | None = None
        async for frame in ws:
            text = frame if isinstance(frame, str) else frame.decode()
            if ttft is None and 'data-frame="token"' in text:
                ttft = time.perf_counter() - started
            if 'data-frame="error"' in text:
                raise SystemExit(f"the stack answered with an error frame: {text[:300]}")
            if 'data-frame="end"' in text:
                break
    if ttft is None:
        raise SystemExit("the answer ended without a token frame")
    turn = await Turn.objects.filter(conversation=conversation).order_by("-created_at").afirst()
    assert turn is not None
    return ttft, turn


async def ours_v1(
    client: httpx.AsyncClient, base: str, key: str, question: str
) -> tuple[float, Turn]:
    """Seconds from sending the request to the first chunk with text, and the finished turn."""
    body = {"messages": [{"role": "user", "content": question}], "stream": True}
    headers = {"Authorization": f"Bearer {key}"}
    started = time.perf_counter()
    ttft: float | None = None
    turn_id: int | None = None
    async with client.stream(
        "POST", f"{base}/v1/chat/completions", json=body, headers=headers
    ) as reply:
        if reply.status_code != 200:
            raise SystemExit(f"/v1 answered {reply.status_code}: {(await reply.aread())[:300]!r}")
        async for line in reply.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            turn_id = turn_id or int(str(chunk["id"]).rsplit("-", 1)[-1])
            choices = chunk.get("choices") or [{}]
            if ttft is None and (choices[0].get("delta") or {}).get("content"):
                ttft = time.perf_counter() - started
    if ttft is None or turn_id is None:
        raise SystemExit("the /v1 answer ended without text")
    return ttft, await Turn.objects.aget(pk=turn_id)


async def baseline(client: httpx.AsyncClient, endpoint: ModelEndpoint, prompt: str) -> float:
    body: dict[str, Any] = {
        "model": endpoint.model_id,
        "prompt": prompt,
        "stream": True,
        "max_tokens": endpoint.max_output_tokens,
        "temperature": endpoint.temperature,
        "stop": (endpoint.options or {}).get("stop"),
    }
    started = time.perf_counter()
    ttft: float | None = None
    async with client.stream("POST", f"{endpoint.base_url}/completions", json=body) as reply:
        reply.raise_for_status()
        async for line in reply.aiter_lines():
            if ttft is not None or not line.startswith("data: ") or line == "data: [DONE]":
                continue
            if json.loads(line[6:])["choices"][0].get("text"):
                ttft = time.perf_counter() - started
    if ttft is None:
        raise SystemExit("the model server streamed no text")
    return ttft


async def flush(client: httpx.AsyncClient, endpoint: ModelEndpoint, prompt: str) -> None:
    """Leave the server's prompt cache holding another question after the same system prompt.

    llama.cpp keeps the last prompt's evaluated tokens and skips them when the next prompt starts
    the same way. Without this, whichever side asked second would skip the prompt evaluation that
    dominates time to first token on a CPU; with it, both evaluate the question, as every real
    turn does (the shared system prompt stays cached).
    """
    body = {"model": endpoint.model_id, "prompt": prompt, "max_tokens": 1}
    reply = await client.post(f"{endpoint.base_url}/completions", json=body)
    reply.raise_for_status()


def _rendered_prompt(turn_id: int, endpoint: ModelEndpoint, question: str | None = None) -> str:
    """What our stack sends the model for this turn: history, then retrieval and its passages;
    with `question`, the /v1 call's messages (one user message) instead of the history."""
    asked = _v1_prompt(question) if question is not None else prompt_for_turn(turn_id)
    prepared = _prepare(turn_id, None, asked, Tracer())
    return render_completion(endpoint.prompt_template, prepared.prompt)


def _v1_prompt(question: str) -> Any:
    return prompt_from([ChatMessageIn.model_validate({"role": "user", "content": question})])


@contextmanager
def assistant_settings_for_run(**fields: Any) -> Iterator[None]:
    """The assistant settings with `fields` changed for the run, then as they were (or absent)."""
    saved = AssistantSettings.objects.filter(pk=1).first()
    config = assistant_settings()
    for name, value in fields.items():
        setattr(config, name, value)
    config.save()
    try:
        yield
    finally:
        if saved is None:
            AssistantSettings.objects.filter(pk=1).delete()
        else:
            saved.save()


@contextmanager
def plain_pipeline() -> Iterator[None]:
    """Tools beyond the knowledge-base search off for the run, then as they were: with one on
    (`make run` turns the demo's on), an agent's turn asks the model to choose a step before it
    answers, and that, not the path measured here, would be timed."""
    enabled = list(
        ToolSetting.objects.filter(enabled=True)
        .exclude(name="kb_search")
        .values_list("pk", flat=True)
    )
    ToolSetting.objects.filter(pk__in=enabled).update(enabled=False)
    try:
        yield
    finally:
        ToolSetting.objects.filter(pk__in=enabled).update(enabled=True)


@contextmanager
def grounding_preferred() -> Iterator[None]:
    """Demo knowledge base in place, and every question answered by the model, for the run."""
    demo_knowledge_ensure()
    for source in Source.objects.exclude(status=Source.Status.DONE):
        source_ingest(source_id=source.pk)
    with assistant_settings_for_run(grounding=AssistantSettings.Grounding.PREFERRED):
        yield


@contextmanager
def grounding_off() -> Iterator[None]:
    """The /v1 run: the caller's messages go to the model as sent, no answer cache."""
    with assistant_settings_for_run(grounding=AssistantSettings.Grounding.OFF, cache_enabled=False):
        yield


def _probe_prompt(user: User, question: str, endpoint: ModelEndpoint, v1: bool = False) -> str:
    """The prompt our stack renders for this question in a fresh conversation (or /v1 call)."""
    conversation = services.conversation_create(owner=user)
    turn = services.turn_create(conversation=conversation, user_text=question)
    try:
        return _rendered_prompt(turn.pk, endpoint, question if v1 else None)
    finally:
        services.conversation_delete(conversation=conversation)


async def bench(
    rounds: int, warmup: int, port: int, session: str, endpoint: ModelEndpoint, key: str | None
) -> None:
    """`key`: measure /v1 with it instead of the websocket."""
    v1 = key is not None
    user = await User.objects.aget(username=BENCH_USER)
    prompts = {q: await sync_to_async(_probe_prompt)(user, q, endpoint, v1) for q in QUESTIONS}
    other = await sync_to_async(_probe_prompt)(user, FLUSH_QUESTION, endpoint, v1)
    base = f"http://127.0.0.1:{port}"

    async def ours_any(question: str) -> tuple[float, Turn]:
        if key is not None:
            return await ours_v1(client, base, key, question)
        return await ours(port, session, user, question)

    ours_ms: list[float] = []
    base_ms: list[float] = []
    inside_ms: list[float] = []
    before_model_ms: list[float] = []
    ours_first: list[bool] = []
    async with httpx.AsyncClient(timeout=120) as client:
        for i in range(warmup + rounds):
            question = QUESTIONS[i % len(QUESTIONS)]
            # Alternate which goes first so neither always meets a just-used server.
            if i % 2 == 0:
                await flush(client, endpoint, other)
                t_ours, turn = await ours_any(question)
                await flush(client, endpoint, other)
                t_base = await baseline(client, endpoint, prompts[question])
            else:
                await flush(client, endpoint, other)
                t_base = await baseline(client, endpoint, prompts[question])
                await flush(client, endpoint, other)
                t_ours, turn = await ours_any(question)
            sent = await sync_to_async(_rendered_prompt)(
                turn.pk, endpoint, question if v1 else None
            )
            if sent != prompts[question]:
                raise SystemExit("the baseline's prompt differs from what our stack sent")
            if i >= warmup:
                ours_ms.append(t_ours * 1000)
                base_ms.append(t_base * 1000)
                inside_ms.append(turn.ttft_ms or 0.0)
                before_model_ms.append(await sync_to_async(_before_model_ms)(turn.pk))
                ours_first.append(i % 2 == 0)
    _report(
        ours_ms,
        base_ms,
        inside_ms,
        ours_first,
        "our /v1 (SSE, API key)" if v1 else None,
        before_model_ms,
    )
    if key is not None:
        async with httpx.AsyncClient(timeout=30) as client:
            await models_list(client, base, key, endpoint)


MODELS_REQUESTS = 100


async def models_list(
    client: httpx.AsyncClient, base: str, key: str, endpoint: ModelEndpoint
) -> None:
    """`GET /v1/models`, ours (key check and catalogue read) against the model server's own,
    alternated, each on a kept-alive connection: what a client library pays before it asks."""
    ours_ms: list[float] = []
    base_ms: list[float] = []
    headers = {"Authorization": f"Bearer {key}"}
    for i in range(MODELS_REQUESTS + 5):
        started = time.perf_counter()
        reply = await client.get(f"{base}/v1/models", headers=headers)
        ours = time.perf_counter() - started
        reply.raise_for_status()
        started = time.perf_counter()
        reply = await client.get(f"{endpoint.base_url}/models")
        theirs = time.perf_counter() - started
        reply.raise_for_status()
        if i >= 5:
            ours_ms.append(ours * 1000)
            base_ms.append(theirs * 1000)
    mine, direct = statistics.median(ours_ms), statistics.median(base_ms)
    print(f"\nGET /v1/models over {MODELS_REQUESTS} alternated requests")
    print(
        f"model server directly        median {direct:7.1f} ms   p90 {_percentile(base_ms, 0.9):7.1f} ms"
    )
    print(
        f"ours (API key)               median {mine:7.1f} ms   p90 {_percentile(ours_ms, 0.9):7.1f} ms"
    )
    print(f"ratio of medians             {mine / direct:7.2f}x")


def _before_model_ms(turn_id: int) -> float:
    """From `turn_run`'s start (its root span) to the model call's span: the turn's preparation."""
    spans = Span.objects.filter(turn_id=turn_id).order_by("started_at")
    root = spans.filter(parent__isnull=True).first()
    model = spans.filter(kind=Span.Kind.LLM).first()
    if root is None or model is None:
        return 0.0
    return (model.started_at - root.started_at).total_seconds() * 1000


def _report(
    ours_ms: list[float],
    base_ms: list[float],
    inside_ms: list[float],
    ours_first: list[bool],
    ours_label: str | None = None,
    before_model_ms: list[float] | None = None,
) -> None:
    def line(name: str, values: list[float]) -> str:
        return (
            f"{name:<28} median {statistics.median(values):7.1f} ms   "
            f"p90 {_percentile(values, 0.9):7.1f} ms"
        )

    overhead = [o - b for o, b in zip(ours_ms, base_ms, strict=True)]
    median_ours, median_base = statistics.median(ours_ms), statistics.median(base_ms)
    print(f"\nTime to first token over {len(ours_ms)} interleaved rounds")
    print(line("model server directly", base_ms))
    print(line(ours_label or "our stack (websocket)", ours_ms))
    print(line("  of which inside turn_run", inside_ms))
    if before_model_ms:
        print(line("    before the model call", before_model_ms))
    print(f"median overhead (paired)     {statistics.median(overhead):7.1f} ms")
    # What is left of the order effect after `flush` (it should be small).
    for flag, label in ((True, "our stack first"), (False, "baseline first")):
        subset = [d for d, first in zip(overhead, ours_first, strict=True) if first is flag]
        if subset:
            print(f"  rounds with {label:<16} {statistics.median(subset):7.1f} ms")
    print(f"ratio of medians             {median_ours / median_base:7.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--v1", action="store_true", help="our /v1/chat/completions (grounding off) instead"
    )
    parser.add_argument(
        "--no-grounding",
        action="store_true",
        help="the websocket with grounding and the answer cache off (no retrieval step)",
    )
    args = parser.parse_args()

    ensure_services()
    user = user_create(
        username=BENCH_USER, password=BENCH_PASSWORD, role=AGENT, full_name="Bench Agent"
    )
    # The previous run's turns stay until now for inspection; they must not pile up.
    Conversation.objects.filter(owner=user).delete()
    ApiKey.objects.filter(user=user).delete()
    key = api_key_create(user=user, name="bench-ttft").plaintext if args.v1 else None
    port = free_port()
    settings_for_run = grounding_off() if args.v1 or args.no_grounding else grounding_preferred()
    with local_endpoint_as_default() as endpoint, settings_for_run, plain_pipeline():
        endpoint.refresh_from_db()
        # As in production: DEBUG off (no query log), whatever this shell runs with.
        with model_server_running(endpoint.base_url), daphne_running(port, env=production_env()):
            session = login(f"http://127.0.0.1:{port}")
            asyncio.run(bench(args.rounds, args.warmup, port, session, endpoint, key))


if __name__ == "__main__":
    main()
