"""The real local model (Gemma 3 270M in llama.cpp's server) answering through our own stack."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import User

from chatbot.agent.turn import turn_run
from chatbot.chat import services
from chatbot.llm.catalogue import local_endpoint_ensure
from chatbot.llm.stream import astream_text
from chatbot.llm.types import EndpointConfig, Message, Prompt, Usage
from chatbot.models import ModelEndpoint, Span, Turn
from chatbot.runtime import model_server

pytestmark = [pytest.mark.model_server, pytest.mark.django_db(transaction=True)]

QUESTION = (
    "Context: The password reset link expires after 30 minutes. "
    "Question: How long is the reset link valid? Answer:"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def local_model_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = Path(settings.LOCAL_MODEL_PATH)
    if not path.exists():
        # Never a skip: a CI run without the model must not pass quietly.
        pytest.fail(model_server.model_missing_message(path), pytrace=False)
    port = _free_port()
    log_path = tmp_path_factory.mktemp("model-server") / "model-server.log"
    process = model_server.start(model_path=path, port=port, log_path=log_path, n_ctx=2048)
    url = model_server.base_url("127.0.0.1", port)
    try:
        model_server.wait_ready(url, timeout=120, process=process)
    except model_server.ModelServerError as exc:
        model_server.stop(process)
        pytest.fail(f"{exc}\n{log_path.read_text(errors='replace')[-3000:]}", pytrace=False)
    yield url
    model_server.stop(process)


def _endpoint(url: str, **fields: object) -> ModelEndpoint:
    defaults: dict[str, object] = {
        "provider": ModelEndpoint.Provider.OPENAI,
        "base_url": url,
        "model_id": model_server.MODEL_ALIAS,
        "style": ModelEndpoint.Style.COMPLETION,
        "prompt_template": "{question}",
        "max_output_tokens": 24,
        "temperature": 0.0,
        "options": {"stop": ["\nQuestion:", "\n\n"]},
        **fields,
    }
    endpoint, _ = ModelEndpoint.objects.update_or_create(name="local-under-test", defaults=defaults)
    return endpoint


async def test_it_answers_from_the_context_through_our_stream(local_model_url: str) -> None:
    endpoint = await sync_to_async(_endpoint)(local_model_url)
    usage = Usage()
    prompt = Prompt((Message("user", QUESTION),))

    pieces = [
        text async for text in astream_text(EndpointConfig.from_model(endpoint), prompt, usage)
    ]

    answer = "".join(pieces)
    assert "30" in answer, answer
    assert len(pieces) > 1, "the answer streams in pieces"
    assert usage.input_tokens > 0 and usage.output_tokens > 0


async def test_it_records_a_done_turn_with_the_catalogue_entry(
    alice: User, local_model_url: str
) -> None:
    def catalogue_entry() -> ModelEndpoint:
        # The entry `manage.py bootstrap` creates, pointed at this test's server.
        endpoint = local_endpoint_ensure()
        ModelEndpoint.objects.filter(is_default=True).update(is_default=False)
        ModelEndpoint.objects.filter(pk=endpoint.pk).update(
            base_url=local_model_url, is_default=True, max_output_tokens=24
        )
        return endpoint

    endpoint = await sync_to_async(catalogue_entry)()
    conversation = await sync_to_async(services.conversation_create)(owner=alice)
    turn = await sync_to_async(services.turn_create)(
        conversation=conversation, user_text="How long is the password reset link valid?"
    )
    received: list[str] = []

    async def emit(text: str) -> None:
        received.append(text)

    outcome = await turn_run(turn_id=turn.pk, emit=emit)

    assert outcome.status == "done", outcome.error
    saved = await Turn.objects.aget(pk=turn.pk)
    assert saved.status == Turn.Status.DONE
    assert saved.endpoint_id == endpoint.pk
    assert saved.answer == "".join(received) and saved.answer.strip()
    assert saved.tokens_in > 0 and saved.tokens_out > 0
    assert saved.ttft_ms is not None
    llm = await Span.objects.aget(turn=saved, kind=Span.Kind.LLM)
    assert llm.name == endpoint.name
    assert llm.tokens_out == saved.tokens_out
    assert llm.attributes["provider"] == "openai" and llm.attributes["style"] == "completion"


async def test_it_answers_a_number_with_the_sql_tool_on_the_bundled_model(
    alice: User, local_model_url: str, reporting_db: str
) -> None:
    """The demo: the bundled model chooses the sql tool by filling the step schema under a
    grammar, writes the query, and answers with the number."""
    from chatbot.agent.tools.access import tools_ensure
    from chatbot.models import ToolSetting

    def setup() -> None:
        endpoint = local_endpoint_ensure()
        ModelEndpoint.objects.filter(is_default=True).update(is_default=False)
        ModelEndpoint.objects.filter(pk=endpoint.pk).update(
            base_url=local_model_url, is_default=True, max_output_tokens=24, temperature=0.0
        )
        tools_ensure()
        ToolSetting.objects.filter(name="sql").update(enabled=True, roles=["agent"])

    await sync_to_async(setup)()
    conversation = await sync_to_async(services.conversation_create)(owner=alice)
    turn = await sync_to_async(services.turn_create)(
        conversation=conversation, user_text="How many open tickets are there for billing?"
    )

    async def emit(text: str) -> None:
        pass

    outcome = await turn_run(turn_id=turn.pk, emit=emit)

    assert outcome.status == "done", outcome.error
    sql = await Span.objects.aget(turn_id=turn.pk, kind=Span.Kind.TOOL, name="sql")
    assert sql.attributes["status"] == "done", sql.error
    assert "product = 'billing'" in sql.attributes["data"]["sql"]
    assert sql.attributes["data"]["rows"] == [[25]]
    assert "25" in outcome.answer
    chooses = [s.attributes async for s in Span.objects.filter(turn_id=turn.pk, name="choose")]
    assert chooses[0]["way"] == "structured" and chooses[0]["action"] == "sql"


def test_it_answers_every_call_from_sync_code(local_model_url: str) -> None:
    """A Celery task calls the model through async_to_sync, a new event loop each time: the
    second call must not reuse the first call's client (it failed with "Event loop is closed"
    against this server before the registry kept clients per loop)."""
    from asgiref.sync import async_to_sync

    endpoint = EndpointConfig.from_model(_endpoint(local_model_url))

    async def ask() -> str:
        prompt = Prompt((Message("user", QUESTION),))
        return "".join([t async for t in astream_text(endpoint, prompt, Usage())])

    answers = [async_to_sync(ask)() for _ in range(2)]

    assert all("30" in answer for answer in answers), answers
