"""API keys' scopes, expiry, revocation and last use; rate limits, token quotas and the cap on
answers at once, as /api and /v1 callers see them (429 with Retry-After, in each API's shape)."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from chatbot.accounts import limits
from chatbot.accounts.services import api_key_create, api_key_revoke
from chatbot.chat import services
from chatbot.models import ApiKey, Conversation, Turn
from tests.api.conftest import bearer, finished_turn

pytestmark = pytest.mark.django_db


def _key(user: User, **kwargs: Any) -> str:
    return api_key_create(user=user, name="tests", **kwargs).plaintext


def _post(path: str, body: dict[str, Any], key: str) -> Any:
    return Client().post(
        path, data=json.dumps(body), content_type="application/json", headers=bearer(key)
    )


def _ask(conversation: Conversation, key: str, **extra: Any) -> Any:
    return _post(
        f"/api/conversations/{conversation.pk}/messages", {"message": "Hi there", **extra}, key
    )


def _complete(key: str, **extra: Any) -> Any:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "Hi"}], **extra}
    return _post("/v1/chat/completions", body, key)


# --- scopes -----------------------------------------------------------------------------------------


def test_it_refuses_a_search_only_key_on_chat_endpoints_with_403(alice, fake_endpoint) -> None:
    fake_endpoint()
    key = _key(alice, scopes=["search"])
    conversation = services.conversation_create(owner=alice)

    responses = {
        "v1": _complete(key),
        "list": Client().get("/api/conversations", headers=bearer(key)),
        "create": _post("/api/conversations", {"title": "x"}, key),
        "ask": _ask(conversation, key),
    }

    for name, response in responses.items():
        assert response.status_code == 403, name
    assert responses["v1"].json()["error"]["type"] == "permission_error"
    assert "needs the 'chat' scope" in responses["v1"].json()["error"]["message"]
    assert "needs the 'chat' scope" in responses["list"].json()["detail"]
    assert not Turn.objects.exists()


def test_it_lets_a_search_key_search_and_refuses_a_chat_only_key_there(alice) -> None:
    search_key, chat_key = _key(alice, scopes=["search"]), _key(alice, scopes=["chat"])

    allowed = _post("/api/search", {"query": "vpn"}, search_key)
    refused = _post("/api/search", {"query": "vpn"}, chat_key)

    assert allowed.status_code == 200 and allowed.json()["hits"] == []
    assert refused.status_code == 403
    assert "needs the 'search' scope" in refused.json()["detail"]


def test_it_lets_a_read_only_key_read_but_not_write(alice, fake_endpoint) -> None:
    fake_endpoint()
    key = _key(alice, scopes=["read_only"])
    conversation = services.conversation_create(owner=alice, title="Mine")

    listed = Client().get("/api/conversations", headers=bearer(key))
    read = Client().get(f"/api/conversations/{conversation.pk}", headers=bearer(key))
    models = Client().get("/v1/models", headers=bearer(key))
    asked = _ask(conversation, key)
    completed = _complete(key)

    assert listed.status_code == read.status_code == models.status_code == 200
    assert [c["title"] for c in listed.json()["items"]] == ["Mine"]
    assert asked.status_code == completed.status_code == 403
    assert not Turn.objects.exists()


def test_it_does_not_limit_a_browser_session_by_scopes(alice, client_as, fake_endpoint) -> None:
    fake_endpoint()
    api_key_create(user=alice, scopes=["search"])  # a key of hers has no bearing on her session

    response = client_as(alice).get("/api/conversations")

    assert response.status_code == 200


def test_it_gives_all_scopes_to_keys_made_without_naming_any(alice) -> None:
    assert api_key_create(user=alice).key.scopes == ["chat", "search", "read_only"]
    with pytest.raises(ValueError, match="Scopes must be some of"):
        api_key_create(user=alice, scopes=["admin"])


# --- expiry, revocation, deactivation, last use -------------------------------------------------------


def test_it_refuses_an_expired_key_with_401_saying_so(alice, fake_endpoint) -> None:
    fake_endpoint()
    key = _key(alice, expires_at=timezone.now() - timedelta(minutes=1))

    api = Client().get("/api/conversations", headers=bearer(key))
    v1 = _complete(key)

    assert api.status_code == v1.status_code == 401
    assert "expired on" in api.json()["detail"]
    error = v1.json()["error"]
    assert "expired on" in error["message"] and error["code"] == "invalid_api_key"


def test_it_accepts_a_key_until_it_expires(alice) -> None:
    key = _key(alice, expires_at=timezone.now() + timedelta(days=1))
    assert Client().get("/api/conversations", headers=bearer(key)).status_code == 200


def test_it_refuses_a_revoked_key_with_401_saying_so(alice, fake_endpoint) -> None:
    fake_endpoint()
    new = api_key_create(user=alice)
    api_key_revoke(key=new.key)

    api = Client().get("/api/conversations", headers=bearer(new.plaintext))
    v1 = _complete(new.plaintext)

    assert api.status_code == v1.status_code == 401
    assert "revoked on" in api.json()["detail"]
    assert "revoked on" in v1.json()["error"]["message"]


def test_it_refuses_the_key_of_a_deactivated_person(alice) -> None:
    key = _key(alice)
    User.objects.filter(pk=alice.pk).update(is_active=False)

    response = Client().get("/api/conversations", headers=bearer(key))

    assert response.status_code == 401
    assert "deactivated" in response.json()["detail"]


def test_it_records_last_use_at_most_once_a_minute(alice, django_assert_num_queries) -> None:
    new = api_key_create(user=alice)
    assert new.key.last_used_at is None

    Client().get("/api/conversations", headers=bearer(new.plaintext))
    new.key.refresh_from_db()
    first = new.key.last_used_at
    assert first is not None
    Client().get("/api/conversations", headers=bearer(new.plaintext))
    new.key.refresh_from_db()
    assert new.key.last_used_at == first, "a second use within the minute writes nothing"

    ApiKey.objects.filter(pk=new.key.pk).update(last_used_at=first - timedelta(minutes=2))
    Client().get("/api/conversations", headers=bearer(new.plaintext))
    new.key.refresh_from_db()
    assert new.key.last_used_at > first - timedelta(minutes=2)


# --- createapikey -------------------------------------------------------------------------------------


def test_createapikey_takes_scopes_and_an_expiry(alice) -> None:
    call_command(
        "createapikey",
        "alice",
        "--scopes",
        "search,read_only",
        "--expires-days",
        "7",
        stdout=StringIO(),
    )

    key = ApiKey.objects.get(user=alice)
    assert key.scopes == ["search", "read_only"]
    assert key.expires_at is not None
    assert timedelta(days=6) < key.expires_at - timezone.now() <= timedelta(days=7)


def test_createapikey_refuses_unknown_scopes(alice) -> None:
    with pytest.raises(CommandError, match="Scopes must be some of"):
        call_command("createapikey", "alice", "--scopes", "everything", stdout=StringIO())
    assert not ApiKey.objects.exists()


# --- rate limits --------------------------------------------------------------------------------------


def test_it_answers_429_in_openais_shape_over_the_rate_limit(
    alice, settings, fake_endpoint
) -> None:
    fake_endpoint()
    settings.RATE_LIMIT_PER_MINUTE = 2
    key = _key(alice)

    responses = [Client().get("/v1/models", headers=bearer(key)) for _ in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 429]
    limited = responses[-1]
    assert 1 <= int(limited["Retry-After"]) <= 60
    error = limited.json()["error"]
    assert error["type"] == "requests" and error["code"] == "rate_limit_exceeded"
    assert error["param"] is None
    assert "at most 2 a minute" in error["message"]


def test_it_answers_429_with_a_readable_detail_on_the_api(alice, settings) -> None:
    settings.RATE_LIMIT_PER_MINUTE = 1
    key = _key(alice)

    first = Client().get("/api/conversations", headers=bearer(key))
    second = Client().get("/api/conversations", headers=bearer(key))

    assert first.status_code == 200 and second.status_code == 429
    body = second.json()
    assert "Too many requests" in body["detail"] and body["limit"] == "rate"
    assert int(second["Retry-After"]) == body["retry_after"] >= 1


def test_it_limits_a_person_across_keys_and_the_browser(alice, settings, client_as) -> None:
    settings.RATE_LIMIT_PER_MINUTE = 2
    first, second = _key(alice), _key(alice)

    assert Client().get("/api/conversations", headers=bearer(first)).status_code == 200
    assert Client().get("/api/conversations", headers=bearer(second)).status_code == 200
    assert client_as(alice).get("/api/conversations").status_code == 429


def test_it_limits_a_key_by_its_own_figure(alice, settings) -> None:
    settings.RATE_LIMIT_PER_MINUTE = 100
    new = api_key_create(user=alice)
    ApiKey.objects.filter(pk=new.key.pk).update(rate_limit_per_minute=1)

    first = Client().get("/api/conversations", headers=bearer(new.plaintext))
    second = Client().get("/api/conversations", headers=bearer(new.plaintext))

    assert (first.status_code, second.status_code) == (200, 429)
    assert "with this API key" in second.json()["detail"]


def test_it_counts_each_person_separately(alice, rita, settings) -> None:
    settings.RATE_LIMIT_PER_MINUTE = 1
    assert Client().get("/api/conversations", headers=bearer(_key(alice))).status_code == 200
    assert Client().get("/api/conversations", headers=bearer(_key(rita))).status_code == 200


# --- token quota --------------------------------------------------------------------------------------


def test_it_refuses_a_turn_over_the_daily_token_quota(alice, settings, fake_endpoint) -> None:
    fake_endpoint()
    conversation = services.conversation_create(owner=alice)
    finished_turn(conversation)  # 12 tokens in, 5 out
    settings.TOKEN_QUOTA_PER_DAY = 17
    key = _key(alice)

    api = _ask(conversation, key)
    v1 = _complete(key)

    assert api.status_code == v1.status_code == 429
    assert "token quota (17 of 17 tokens)" in api.json()["detail"]
    assert api.json()["limit"] == "quota"
    error = v1.json()["error"]
    assert error["type"] == error["code"] == "insufficient_quota"
    assert "resets at 00:00 UTC" in error["message"]
    assert v1["x-should-retry"] == "false"
    assert 0 < int(v1["Retry-After"]) <= 24 * 3600
    assert Turn.objects.filter(conversation__owner=alice).count() == 1, "nothing new saved"


def test_it_answers_under_the_quota(alice, settings, fake_endpoint) -> None:
    fake_endpoint(["Fine."])
    conversation = services.conversation_create(owner=alice)
    finished_turn(conversation)
    settings.TOKEN_QUOTA_PER_DAY = 18

    response = _ask(conversation, _key(alice))

    assert response.status_code == 200 and response.json()["answer"] == "Fine."
    assert limits.quota_use(user=alice).used > 17


def test_it_counts_only_todays_tokens(alice, settings) -> None:
    conversation = services.conversation_create(owner=alice)
    old = finished_turn(conversation)
    Turn.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=1))
    settings.TOKEN_QUOTA_PER_DAY = 17

    assert limits.quota_use(user=alice).used == 0
    limits.quota_check(user=alice)  # does not raise


# --- answers at once ----------------------------------------------------------------------------------


def test_it_caps_answers_at_once_per_person_and_frees_a_slot_when_one_ends(
    alice, rita, settings
) -> None:
    settings.MAX_CONCURRENT_ANSWERS = 2
    first = limits.answer_slot_acquire(user=alice)
    second = limits.answer_slot_acquire(user=alice)

    with pytest.raises(limits.LimitExceeded) as refused:
        limits.answer_slot_acquire(user=alice)
    assert refused.value.kind == "concurrency" and "already have 2 answers" in refused.value.message
    assert limits.answer_slot_acquire(user=rita) is not None, "another person is not affected"

    limits.answer_slot_release(user=alice, token=first)
    third = limits.answer_slot_acquire(user=alice)
    assert limits.answers_running(user=alice) == 2
    for token in (second, third):
        limits.answer_slot_release(user=alice, token=token)
    assert limits.answers_running(user=alice) == 0


def test_it_frees_a_slot_a_crashed_process_never_gave_back(alice, settings) -> None:
    settings.MAX_CONCURRENT_ANSWERS = 1
    settings.ANSWER_SLOT_TTL_S = 0  # the slot is already past its expiry when the next one asks
    limits.answer_slot_acquire(user=alice)  # never released

    assert limits.answer_slot_acquire(user=alice) is not None


def test_it_refuses_an_answer_over_the_cap_with_429_and_saves_nothing(
    alice, settings, fake_endpoint
) -> None:
    fake_endpoint(["Done."])
    settings.MAX_CONCURRENT_ANSWERS = 1
    conversation = services.conversation_create(owner=alice)
    key = _key(alice)
    held = limits.answer_slot_acquire(user=alice)  # an answer running in another tab

    api = _ask(conversation, key)
    v1 = _complete(key)

    assert api.status_code == v1.status_code == 429
    assert api.json()["limit"] == "concurrency" and "already have 1 answer" in api.json()["detail"]
    assert v1.json()["error"]["code"] == "rate_limit_exceeded" and v1.has_header("Retry-After")
    assert not Turn.objects.exists()

    limits.answer_slot_release(user=alice, token=held)
    answered = _ask(conversation, key)
    assert answered.status_code == 200
    assert limits.answers_running(user=alice) == 0, "the answer gave its slot back"


@pytest.mark.django_db(transaction=True)
async def test_it_gives_the_slot_back_after_a_stream(
    alice, settings, fake_endpoint, asgi_client
) -> None:
    await sync_to_async(fake_endpoint)(["Streamed."])
    settings.MAX_CONCURRENT_ANSWERS = 1
    conversation = await sync_to_async(services.conversation_create)(owner=alice)
    key = await sync_to_async(_key)(alice)
    messages = {"role": "user", "content": "Hi"}

    async with asgi_client(**bearer(key)) as client:
        api = await client.post(
            f"/api/conversations/{conversation.pk}/messages",
            json={"message": "Hi", "stream": True},
        )
        held_after_api = await sync_to_async(limits.answers_running)(user=alice)
        v1 = await client.post(
            "/v1/chat/completions",
            json={"model": "fake-model", "messages": [messages], "stream": True},
        )

    assert api.status_code == v1.status_code == 200
    assert '"answer": "Streamed."' in api.text
    assert '"finish_reason": "stop"' in v1.text and v1.text.endswith("data: [DONE]\n\n")
    assert held_after_api == 0
    assert await sync_to_async(limits.answers_running)(user=alice) == 0


def test_limits_can_be_turned_off(alice, settings) -> None:
    settings.MAX_CONCURRENT_ANSWERS = 0
    settings.TOKEN_QUOTA_PER_DAY = 0
    conversation = services.conversation_create(owner=alice)
    finished_turn(conversation)

    assert limits.answer_admit(user=alice) is None
