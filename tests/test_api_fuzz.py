"""Both APIs are tried as a client would, from their published schemas: schemathesis generates
requests from /api/openapi.json and /v1/openapi.json (valid and invalid ones) with a real key, and
every check it has must pass: no server error, only documented status codes, content types and
bodies, schema-valid requests accepted, invalid ones refused. Every 4xx says what went wrong.

The app runs in this process as ASGI (channels' router, as daphne serves it) against the test
database, committed so the app's threads see the key; answers come from the fake chat model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.test import Client
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.core.transport import Response

from chatbot.accounts.services import api_key_create
from chatbot.models import ModelEndpoint

pytestmark = pytest.mark.django_db(transaction=True)

# Bounded: 20 generated requests per operation and no per-example deadline (a turn runs the
# agent, retrieval and the judges' bookkeeping: seconds on a busy machine, not milliseconds).
FUZZ = hypothesis_settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.fixture
def api_key(alice: User, fake_endpoint: Callable[..., ModelEndpoint], settings: Any) -> str:
    # Hundreds of requests a minute from one key: the rate limit would answer most with 429.
    settings.RATE_LIMIT_PER_MINUTE = 0
    settings.MAX_CONCURRENT_ANSWERS = 0
    # Native tool calling, so requests with the caller's own `tools` are answered, not refused.
    fake_endpoint(
        ["Open **Settings → Security** and choose *Reset password*."], tool_calling="native"
    )
    return api_key_create(user=alice, name="fuzz").plaintext


def _app() -> Any:
    from chatbot.asgi import application

    return application


@pytest.fixture
def api_schema(api_key: str) -> Any:
    return schemathesis.openapi.from_asgi("/api/openapi.json", _app())


@pytest.fixture
def openai_schema(api_key: str) -> Any:
    return schemathesis.openapi.from_asgi("/v1/openapi.json", _app())


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32 renames the test per operation through `node._nodeid`, which pytest 9
    no longer has; without it the lazy schema fails before running a single case."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


api = schemathesis.pytest.from_fixture("api_schema")
openai = schemathesis.pytest.from_fixture("openai_schema")


def _readable(response: Response) -> None:
    """A 4xx carries a sentence: `detail` on /api, OpenAI's `error.message` on /v1. A method a
    path does not have is answered by the URL layer in plain text ("Method not allowed", with the
    Allow header schemathesis checks)."""
    if not 400 <= response.status_code < 500:
        return
    if response.status_code == 405:
        message: object = response.text
    else:
        body = response.json()
        message = body.get("detail") if "detail" in body else body.get("error", {}).get("message")
    assert isinstance(message, str) and len(message.split()) >= 3, response.text


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    assert len(keys) == len(set(keys)), f"repeated keys: {keys}"
    return dict(pairs)


@pytest.mark.parametrize("path", ["/api/openapi.json", "/v1/openapi.json"])
def test_the_schemas_are_published_to_anyone_and_parse_strictly(path: str) -> None:
    """Swagger UI (js-yaml) refuses a document that repeats a key, as a 404 once did."""
    response = Client().get(path)

    assert response.status_code == 200
    schema = json.loads(response.content, object_pairs_hook=_no_repeated_keys)
    assert schema["openapi"].startswith("3.")


@api.parametrize()
@FUZZ
def test_the_api_does_what_its_schema_says(case: Any, api_key: str) -> None:
    response = case.call_and_validate(headers={"Authorization": f"Bearer {api_key}"})
    _readable(response)


@openai.parametrize()
@FUZZ
def test_the_openai_compatible_api_does_what_its_schema_says(case: Any, api_key: str) -> None:
    response = case.call_and_validate(headers={"Authorization": f"Bearer {api_key}"})
    _readable(response)


def test_what_the_fuzzer_found_is_refused_in_words(api_key: str) -> None:
    """The failures schemathesis first found, each now a 4xx that says what to change."""
    client = Client(headers={"Authorization": f"Bearer {api_key}"})

    def post(path: str, body: dict[str, Any]) -> tuple[int, str]:
        response = client.post(path, body, content_type="application/json")
        data = response.json()
        return response.status_code, data.get("detail") or data["error"]["message"]

    # An id past PostgreSQL's bigint was a 500.
    assert post("/api/search", {"query": "reset", "collections": [2**64]}) == (
        422,
        f"'collections.0' should be less than or equal to {2**63 - 1}.",
    )
    # A NUL character in a question was a 500 (PostgreSQL cannot store it).
    conversation = client.post("/api/conversations", {}, content_type="application/json").json()
    status, message = post(f"/api/conversations/{conversation['id']}/messages", {"message": "a\0"})
    assert status == 400 and "NUL character" in message
    # A text where a number belongs, or a list where an object belongs, was guessed at.
    assert post("/api/search", {"query": "reset", "k": "5"}) == (422, "'k' must be a whole number.")
    status, message = post(
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "Hi"}], "stream_options": [None]},
    )
    assert status == 400 and "'stream_options' must be a JSON object." in message
