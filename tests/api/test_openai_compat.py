"""The OpenAI-compatible API at /v1/, driven by the official `openai` client in this process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import openai
import pytest
from asgiref.sync import sync_to_async
from django.db.backends.signals import connection_created

from chatbot.models import Conversation, Span, Turn

pytestmark = pytest.mark.django_db(transaction=True)

ANSWER = "Restart the VPN client, then sign in again."
QUESTION = "The VPN drops every hour. What now?"


@pytest.fixture
def openai_for(asgi_client) -> Callable[[str], openai.AsyncOpenAI]:
    def make(key: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url="http://testserver/v1", api_key=key, http_client=asgi_client()
        )

    return make


@pytest.fixture
async def alice_openai(openai_for, alice_key) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai_for(alice_key)
    yield client
    await client.close()


async def test_it_lists_the_enabled_models(alice_openai, fake_endpoint) -> None:
    await sync_to_async(fake_endpoint)(name="fast")
    await sync_to_async(fake_endpoint)(name="careful", default=False)
    await sync_to_async(fake_endpoint)(name="retired", default=False, enabled=False)

    models = await alice_openai.models.list()

    assert [m.id for m in models.data] == ["careful", "fast"]
    assert {m.owned_by for m in models.data} == {"fake"}


async def test_listing_the_models_reuses_the_database_threads_connections(
    alice_openai, fake_endpoint
) -> None:
    """As a synchronous view under daphne, each request's own thread opened a Postgres
    connection of its own; the key check and the read now run on the database threads."""
    await sync_to_async(fake_endpoint)(name="fast")
    opened: list[Any] = []

    def count(sender: Any, connection: Any, **kwargs: Any) -> None:
        opened.append(connection)

    await alice_openai.models.list()  # a database thread connects
    connection_created.connect(count)
    try:
        for _ in range(5):
            assert [m.id for m in (await alice_openai.models.list()).data] == ["fast"]
    finally:
        connection_created.disconnect(count)
    assert opened == []


async def test_it_completes_a_chat_and_records_the_turn(alice, alice_openai, fake_endpoint) -> None:
    endpoint = await sync_to_async(fake_endpoint)([ANSWER])

    completion = await alice_openai.chat.completions.create(
        model="default",
        messages=[
            {"role": "system", "content": "You help the support desk."},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi! What is the problem?"},
            {"role": "user", "content": QUESTION},
        ],
        max_tokens=100,
        temperature=0.1,
        extra_body={"top_k": 5},  # an option we do not know is ignored, not refused
    )

    assert completion.object == "chat.completion"
    assert completion.model == "fake-model"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == ANSWER
    assert completion.choices[0].finish_reason == "stop"
    turn = await Turn.objects.select_related("conversation").aget(
        conversation__owner=alice, conversation__channel=Conversation.Channel.API
    )
    assert completion.id == f"chatcmpl-{turn.pk}"
    assert turn.user_text == QUESTION
    assert turn.status == Turn.Status.DONE and turn.answer == ANSWER
    assert turn.endpoint_id == endpoint.pk
    assert turn.tokens_in > 0 and turn.tokens_out > 0
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == turn.tokens_in
    assert completion.usage.completion_tokens == turn.tokens_out
    assert completion.usage.total_tokens == turn.tokens_in + turn.tokens_out
    assert [s.kind async for s in Span.objects.filter(turn=turn).order_by("started_at")] == [
        "agent",
        "llm",
    ]


async def test_it_passes_the_whole_conversation_to_the_model(alice_openai, fake_endpoint) -> None:
    await sync_to_async(fake_endpoint)([ANSWER, ANSWER])
    history = [
        {"role": "user", "content": "First question " * 50},
        {"role": "assistant", "content": "First answer " * 50},
    ]

    alone = await alice_openai.chat.completions.create(
        model="", messages=[{"role": "user", "content": QUESTION}]
    )
    with_history = await alice_openai.chat.completions.create(
        model="fake-model", messages=[*history, {"role": "user", "content": QUESTION}]
    )

    assert alone.usage and with_history.usage
    assert with_history.usage.prompt_tokens > alone.usage.prompt_tokens + 100
    assert await Turn.objects.filter(user_text=QUESTION).acount() == 2


async def test_it_streams_chunks_ending_with_done(alice, alice_openai, fake_endpoint) -> None:
    await sync_to_async(fake_endpoint)([ANSWER])

    stream = await alice_openai.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    turn = await Turn.objects.select_related("conversation").aget(conversation__owner=alice)
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert {c.id for c in chunks} == {f"chatcmpl-{turn.pk}"}
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    finishing = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishing[-1] == "stop" and set(finishing[:-1]) == {None}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == turn.tokens_out
    assert turn.conversation.channel == Conversation.Channel.API
    assert turn.status == Turn.Status.DONE and turn.answer == ANSWER
    assert await Span.objects.filter(turn=turn).acount() == 2


async def test_it_ends_the_stream_with_done(alice_key, fake_endpoint, asgi_client) -> None:
    await sync_to_async(fake_endpoint)([ANSWER])

    async with asgi_client(Authorization=f"Bearer {alice_key}") as client:
        response = await client.post(
            "/v1/chat/completions",
            json={
                "model": "default",
                "messages": [{"role": "user", "content": "Hi"}],
                "stream": True,
            },
        )

    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.endswith("data: [DONE]\n\n")


async def test_it_reports_a_failed_model_once_without_retries(
    alice, alice_openai, fake_endpoint
) -> None:
    await sync_to_async(fake_endpoint)(["abcdefgh"], error_on_chunk=3)

    with pytest.raises(openai.InternalServerError) as caught:
        await alice_openai.chat.completions.create(
            model="default", messages=[{"role": "user", "content": QUESTION}]
        )

    assert caught.value.status_code == 502
    assert "failed to answer" in caught.value.message
    turn = await Turn.objects.aget(conversation__owner=alice)
    assert turn.status == Turn.Status.FAILED, "one turn: the client was told not to retry"


async def test_it_raises_a_stream_error_when_the_model_fails(alice_openai, fake_endpoint) -> None:
    await sync_to_async(fake_endpoint)(["abcdefgh"], error_on_chunk=3)

    stream = await alice_openai.chat.completions.create(
        model="default", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    with pytest.raises(openai.APIError, match="failed to answer"):
        async for _ in stream:
            pass


async def test_it_refuses_a_bad_key(openai_for, fake_endpoint) -> None:
    await sync_to_async(fake_endpoint)()
    client = openai_for("sk-sa-abc.wrong")

    with pytest.raises(openai.AuthenticationError) as caught:
        await client.models.list()
    with pytest.raises(openai.AuthenticationError):
        await client.chat.completions.create(
            model="default", messages=[{"role": "user", "content": "Hi"}]
        )

    assert caught.value.status_code == 401
    assert caught.value.body == {
        "message": "Incorrect API key provided.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }


async def test_it_refuses_nora(nora, key_for, openai_for, fake_endpoint) -> None:
    await sync_to_async(fake_endpoint)()
    client = openai_for(await sync_to_async(key_for)(nora))

    with pytest.raises(openai.PermissionDeniedError) as caught:
        await client.chat.completions.create(
            model="default", messages=[{"role": "user", "content": "Hi"}]
        )
    with pytest.raises(openai.PermissionDeniedError):
        await client.models.list()

    assert "no access" in caught.value.message
    assert not await Turn.objects.aexists()


async def test_it_answers_404_for_an_unknown_model(alice_openai, fake_endpoint) -> None:
    await sync_to_async(fake_endpoint)()

    with pytest.raises(openai.NotFoundError) as caught:
        await alice_openai.chat.completions.create(
            model="gpt-17", messages=[{"role": "user", "content": "Hi"}]
        )

    assert caught.value.code == "model_not_found"
    assert "gpt-17" in caught.value.message
    assert not await Turn.objects.aexists()


@pytest.mark.parametrize(
    ("messages", "words"),
    [
        ([], "'messages' must contain at least one message."),
        ([{"role": "system", "content": "Be brief."}], "at least one message with the role 'user'"),
        ([{"role": "user", "content": "   "}], "The message is empty."),
        ([{"role": "tool", "content": "42"}], "the role 'tool' is not supported"),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
            "only text content is supported",
        ),
    ],
    ids=["empty", "no-user", "blank", "tool-role", "image"],
)
async def test_it_refuses_bad_messages(messages, words, alice_openai, fake_endpoint) -> None:
    await sync_to_async(fake_endpoint)()

    with pytest.raises(openai.BadRequestError) as caught:
        await alice_openai.chat.completions.create(model="default", messages=messages)

    assert words in caught.value.message
    assert not await Conversation.objects.aexists()


def _exchange(pairs: int, chars: int = 10) -> list[dict[str, str]]:
    messages = []
    for _ in range(pairs):
        messages += [
            {"role": "user", "content": "q" * chars},
            {"role": "assistant", "content": "a" * chars},
        ]
    return [*messages, {"role": "user", "content": QUESTION}]


async def test_it_caps_the_number_of_messages(alice_openai, fake_endpoint, settings) -> None:
    await sync_to_async(fake_endpoint)([ANSWER])
    settings.API_MAX_MESSAGES = 5

    with pytest.raises(openai.BadRequestError) as caught:
        await alice_openai.chat.completions.create(model="default", messages=_exchange(3))
    await alice_openai.chat.completions.create(model="default", messages=_exchange(2))

    assert caught.value.status_code == 400
    assert "'messages' has 7 messages; the limit is 5" in caught.value.message
    assert await Turn.objects.acount() == 1, "only the request within the cap became a turn"


async def test_it_caps_the_characters_of_all_messages_together(
    alice_openai, fake_endpoint, settings
) -> None:
    await sync_to_async(fake_endpoint)([ANSWER])
    # Each message is well under the per-message limit; together they are over the total.
    settings.API_MAX_TOTAL_CHARS = 1000
    history = _exchange(3, chars=200)

    with pytest.raises(openai.BadRequestError) as caught:
        await alice_openai.chat.completions.create(model="default", messages=history)

    assert caught.value.status_code == 400
    assert "more than 1,000 characters in all" in caught.value.message
    assert not await Turn.objects.aexists()


async def test_it_reads_text_parts_as_the_question(alice_openai, fake_endpoint) -> None:
    await sync_to_async(fake_endpoint)([ANSWER])

    await alice_openai.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": [{"type": "text", "text": QUESTION}]}],
    )

    assert await Turn.objects.filter(user_text=QUESTION).aexists()


async def test_it_explains_malformed_requests_in_openai_format(alice_key, asgi_client) -> None:
    async with asgi_client(Authorization=f"Bearer {alice_key}") as client:
        broken = await client.post(
            "/v1/chat/completions", content=b"{oops", headers={"content-type": "application/json"}
        )
        wrong = await client.post(
            "/v1/chat/completions", json={"messages": "hello", "temperature": 9}
        )

    assert broken.status_code == 400
    assert broken.json()["error"]["type"] == "invalid_request_error"
    assert "not a valid JSON object" in broken.json()["error"]["message"]
    assert wrong.status_code == 400
    error = wrong.json()["error"]
    assert error["param"] == "messages"
    assert error["message"] == (
        "'messages' must be a list. 'temperature' should be less than or equal to 2."
    )


async def test_it_refuses_a_request_without_a_key(asgi_client) -> None:
    async with asgi_client() as client:
        models = await client.get("/v1/models")
        completion = await client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}]}
        )

    assert models.status_code == completion.status_code == 401
    assert models.json()["error"]["code"] == "invalid_api_key"
    assert "Missing API key" in completion.json()["error"]["message"]
    assert not await Turn.objects.aexists()


async def test_it_answers_503_when_no_model_is_enabled(alice_openai, fake_endpoint) -> None:
    await sync_to_async(fake_endpoint)(enabled=False)

    with pytest.raises(openai.InternalServerError) as caught:
        await alice_openai.chat.completions.create(
            model="default", messages=[{"role": "user", "content": "Hi"}]
        )

    assert caught.value.status_code == 503
    assert "No model is available" in caught.value.message
    assert not await Turn.objects.aexists()


# --- the caller's own tools, passed through -------------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def _tool_model(fake_endpoint, **fields):
    from chatbot.models import ModelEndpoint

    endpoint = fake_endpoint(
        ["It is sunny in Oslo."], tool_calling=ModelEndpoint.ToolCalling.NATIVE, **fields
    )
    endpoint.options["tool_calls"] = [[{"name": "get_weather", "args": {"city": "Oslo"}}]]
    endpoint.save()
    return endpoint


async def test_it_passes_the_callers_tools_through_and_back(alice_openai, fake_endpoint) -> None:
    await sync_to_async(_tool_model)(fake_endpoint)
    asked = [{"role": "user", "content": "What's the weather in Oslo?"}]

    first = await alice_openai.chat.completions.create(
        model="default", messages=asked, tools=[WEATHER], tool_choice="auto"
    )

    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"
    assert call.function.arguments == '{"city": "Oslo"}'
    turn = await Turn.objects.aget(pk=int(first.id.removeprefix("chatcmpl-")))
    assert turn.status == Turn.Status.DONE and turn.user_text == asked[0]["content"]
    assert turn.answer == '[tool call] get_weather({"city": "Oslo"})'
    llm = await Span.objects.aget(turn=turn, kind="llm")
    assert llm.attributes["tool_names"] == ["get_weather"]
    assert llm.attributes["tool_calls"][0]["arguments"] == {"city": "Oslo"}
    assert not await Span.objects.filter(turn=turn, kind__in=["tool", "retrieval"]).aexists()

    second = await alice_openai.chat.completions.create(
        model="default",
        messages=[
            *asked,
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "clear", "c": 21}'},
        ],
        tools=[WEATHER],
    )

    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "It is sunny in Oslo."


async def test_it_streams_the_callers_tool_calls(alice_openai, fake_endpoint) -> None:
    await sync_to_async(_tool_model)(fake_endpoint)

    stream = await alice_openai.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    calls = [
        c for chunk in chunks for choice in chunk.choices for c in choice.delta.tool_calls or []
    ]
    assert [(c.index, c.function and c.function.name) for c in calls] == [(0, "get_weather")]
    finishes = [choice.finish_reason for chunk in chunks for choice in chunk.choices]
    assert finishes[-1] == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


async def test_it_refuses_tools_for_a_model_that_cannot_call_them(
    alice_openai, fake_endpoint
) -> None:
    await sync_to_async(fake_endpoint)()  # structured choice, not native

    with pytest.raises(openai.BadRequestError) as caught:
        await alice_openai.chat.completions.create(
            model="default",
            messages=[{"role": "user", "content": "Weather?"}],
            tools=[WEATHER],
        )

    assert caught.value.code == "model_cannot_call_tools"
    assert "cannot call your tools" in caught.value.message
    assert not await Turn.objects.aexists()


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"tool_choice": "auto"}, "'tool_choice' needs 'tools'"),
        (
            {"tools": [{"type": "function", "function": {"name": "bad name!"}}]},
            "tools.0.function.name",
        ),
        (
            {
                "tools": [WEATHER],
                "messages": [
                    {"role": "user", "content": "Hi"},
                    {"role": "tool", "content": "42"},
                ],
            },
            "a tool message needs its 'tool_call_id'",
        ),
    ],
    ids=["choice-without-tools", "bad-name", "tool-without-id"],
)
async def test_it_explains_bad_tool_requests(extra, words, alice_openai, fake_endpoint) -> None:
    await sync_to_async(_tool_model)(fake_endpoint)
    request = {"model": "default", "messages": [{"role": "user", "content": "Hi"}], **extra}

    with pytest.raises(openai.BadRequestError) as caught:
        await alice_openai.chat.completions.create(**request)

    assert words in caught.value.message
    assert not await Turn.objects.aexists()


async def test_it_uses_our_own_tools_when_the_caller_sends_none(
    alice_openai, fake_endpoint
) -> None:
    from chatbot.agent.tools.access import tools_ensure
    from chatbot.models import ModelEndpoint, ToolSetting

    def setup() -> None:
        tools_ensure()
        ToolSetting.objects.filter(name="draft").update(enabled=True, roles=["agent"])
        endpoint = fake_endpoint(["Drafted [1]."], tool_calling=ModelEndpoint.ToolCalling.NATIVE)
        args = {"template": "password_reply", "fields": {"name": "Ola"}}
        endpoint.options["tool_calls"] = [[{"name": "draft", "args": args}]]
        endpoint.save()

    await sync_to_async(setup)()

    completion = await alice_openai.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "Draft a password reply to Ola"}]
    )

    assert completion.choices[0].message.content == "Drafted [1]."
    assert completion.choices[0].finish_reason == "stop"
    turn = await Turn.objects.aget(pk=int(completion.id.removeprefix("chatcmpl-")))
    assert await Span.objects.filter(turn=turn, kind="tool", name="draft").aexists()
