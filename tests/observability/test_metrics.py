"""Operations: /metrics (Prometheus), structured logs carrying the turn id, spans written once
after the answer has streamed, and the optional OpenTelemetry export."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
import redis
from asgiref.sync import async_to_sync
from django.conf import settings
from django.test import Client

from chatbot.agent.turn import turn_run
from chatbot.chat import services
from chatbot.models import Span, Turn
from chatbot.telemetry import otel
from chatbot.telemetry.logs import TurnContextFilter, json_formatter, turn_logging
from chatbot.telemetry.tracing import Tracer, spans_save
from tests.fake_peers import fake_peer

pytestmark = pytest.mark.django_db


def _value(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(r"^(\w+)\{(.*)\} (\S+)$", line)
        if match and match.group(1) == name:
            got = ",".join(sorted(match.group(2).split(",")))
            if got == wanted:
                return float(match.group(3))
    return 0.0


async def _quiet(_: str) -> None:
    pass


def test_it_refuses_metrics_without_the_token_or_an_admin(client_as, cast, settings) -> None:
    settings.METRICS_TOKEN = "scrape-secret-1"

    anonymous = Client().get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"].startswith("Bearer")
    for who in ("nora", "alice", "rita"):
        assert client_as(cast[who]).get("/metrics").status_code == 403, who
    assert Client().get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client_as(cast["adam"]).post("/metrics").status_code == 405

    scraper = Client().get("/metrics", headers={"Authorization": "Bearer scrape-secret-1"})
    assert scraper.status_code == 200
    assert scraper["Content-Type"].startswith("text/plain")
    assert client_as(cast["adam"]).get("/metrics").status_code == 200


def test_it_counts_turns_tokens_cost_errors_and_latency(alice, adam, fake_endpoint, client_as):
    fake_endpoint(["One answer."], name="fake-metrics")
    client = client_as(adam)
    before = client.get("/metrics").content.decode()

    conversation = services.conversation_create(owner=alice)
    turn = services.turn_create(conversation=conversation, user_text="How?")
    async_to_sync(turn_run)(turn_id=turn.pk, emit=_quiet)
    fake_endpoint(["abcdefgh"], name="fake-broken", error_on_chunk=2)
    broken = services.turn_create(conversation=conversation, user_text="And now?")
    async_to_sync(turn_run)(turn_id=broken.pk, emit=_quiet)
    client.get("/dashboard/turns/")
    after = client.get("/metrics").content.decode()

    def grew(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    saved = Turn.objects.get(pk=turn.pk)
    assert grew("chatbot_turns_total", model="fake-metrics", status="done") == 1
    assert grew("chatbot_turns_total", model="fake-broken", status="failed") == 1
    assert grew("chatbot_turn_errors_total", model="fake-broken") == 1
    assert (
        grew("chatbot_tokens_total", model="fake-metrics", direction="output") == saved.tokens_out
    )
    assert grew("chatbot_cost_dollars_total", model="fake-metrics") == pytest.approx(
        float(saved.cost)
    )
    # A histogram's _count series: one observation per turn (its value is not asserted).
    turns_observed = "chatbot_turn_duration_seconds_count"
    assert grew(turns_observed, model="fake-metrics", status="done") == 1
    assert grew("chatbot_turn_ttft_seconds_count", model="fake-metrics") == 1
    assert (
        grew(
            "chatbot_http_request_duration_seconds_count",
            method="GET",
            route="dashboard/turns/",
            status="2xx",
        )
        == 1
    )


def test_it_reports_the_queue_depth(adam, client_as) -> None:
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    key = "celery:" + settings.CELERY_TASK_DEFAULT_QUEUE
    broker.delete(key)
    broker.rpush(key, b"{}", b"{}", b"{}")
    try:
        text = client_as(adam).get("/metrics").content.decode()
    finally:
        broker.delete(key)
    assert _value(text, "chatbot_celery_queue_depth", queue="default") == 3


def test_it_writes_the_spans_once_after_the_answer_has_streamed(alice, fake_endpoint) -> None:
    fake_endpoint(["Several pieces of an answer."], name="fake-spans")
    turn = services.turn_create(
        conversation=services.conversation_create(owner=alice), user_text="?"
    )
    seen_while_streaming: list[int] = []

    async def emit(_: str) -> None:
        seen_while_streaming.append(await Span.objects.filter(turn_id=turn.pk).acount())

    async_to_sync(turn_run)(turn_id=turn.pk, emit=emit)

    assert seen_while_streaming and set(seen_while_streaming) == {0}
    assert Span.objects.filter(turn_id=turn.pk).count() == 2


def test_it_logs_with_the_turn_id(alice, fake_endpoint, caplog) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(TurnContextFilter())
    handler.setFormatter(json_formatter())
    logger = logging.getLogger("chatbot.agent.turn")
    logger.addHandler(handler)
    fake_endpoint(["abcdefgh"], name="fake-log", error_on_chunk=2)
    turn = services.turn_create(
        conversation=services.conversation_create(owner=alice), user_text="?"
    )
    try:
        async_to_sync(turn_run)(turn_id=turn.pk, emit=_quiet)
    finally:
        logger.removeHandler(handler)

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    failed = [line for line in lines if "failed" in line["event"]]
    assert failed and failed[0]["turn_id"] == turn.pk
    assert failed[0]["level"] == "warning" and failed[0]["logger"] == "chatbot.agent.turn"

    @turn_logging
    async def outside(*, turn_id: int) -> None:
        logging.getLogger("x").warning("inside")

    record_filter = TurnContextFilter()
    record = logging.LogRecord("x", logging.INFO, "", 0, "after", None, None)
    async_to_sync(outside)(turn_id=7)
    record_filter.filter(record)
    assert getattr(record, "turn_id", 0) is None, "the turn id does not leak past the turn"


def test_it_exports_a_turns_spans_over_otlp(alice, settings, django_capture_on_commit_callbacks):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    turn = services.turn_create(
        conversation=services.conversation_create(owner=alice), user_text="?"
    )
    tracer = Tracer()
    with tracer.span("agent", "turn"):
        with tracer.span("retrieval", "hybrid_search", chunk_ids=[1, 2]) as retrieval:
            retrieval.tokens_in = 0
        with tracer.span("llm", "fake-model") as llm:
            llm.tokens_in, llm.tokens_out = 12, 5

    with fake_peer(lambda path, body: (200, [b""], "application/x-protobuf")) as (url, seen):
        settings.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = f"{url}/v1/traces"
        with django_capture_on_commit_callbacks(execute=True):
            spans_save(turn_id=turn.pk, tracer=tracer)
        provider = otel.provider()
        assert provider is not None
        assert provider.force_flush(10_000)

    assert seen and seen[0]["path"] == "/v1/traces"
    request = ExportTraceServiceRequest.FromString(seen[0]["raw"])
    spans = [s for r in request.resource_spans for ss in r.scope_spans for s in ss.spans]
    by_name = {s.name: s for s in spans}
    assert set(by_name) == {"agent turn", "retrieval hybrid_search", "llm fake-model"}
    assert len({s.trace_id for s in spans}) == 1, "one trace per turn"
    root = by_name["agent turn"]
    assert by_name["llm fake-model"].parent_span_id == root.span_id
    attributes = {a.key: a.value for a in by_name["llm fake-model"].attributes}
    assert attributes["chatbot.turn_id"].int_value == turn.pk
    assert attributes["gen_ai.usage.output_tokens"].int_value == 5
    assert Span.objects.filter(turn=turn).count() == 3


def test_it_labels_unknown_http_methods_as_other_so_series_stay_bounded(adam, client_as) -> None:
    client = client_as(adam)
    for method in ("BREW", "X-ANYTHING-1", "X-ANYTHING-2"):
        client.generic(method, "/healthz")
    text = client.get("/metrics").content.decode()
    methods = set(
        re.findall(r'chatbot_http_request_duration_seconds_count\{[^}]*method="([^"]*)"', text)
    )
    assert "BREW" not in methods and "X-ANYTHING-1" not in methods
    assert "other" in methods
