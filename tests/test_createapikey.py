"""The createapikey command prints a working key once and stores only its hash."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from chatbot.accounts.services import API_KEY_PREFIX, api_key_authenticate
from chatbot.models import ApiKey

pytestmark = pytest.mark.django_db


def test_it_prints_a_key_that_authenticates_its_user(alice) -> None:
    out = StringIO()

    call_command("createapikey", "alice", "--name", "ci-bot", stdout=out)

    plaintext = out.getvalue().strip()
    assert plaintext.startswith(API_KEY_PREFIX)
    assert api_key_authenticate(plaintext) == alice
    key = ApiKey.objects.get(user=alice)
    assert key.name == "ci-bot"
    assert plaintext not in key.hashed_secret and key.hashed_secret != plaintext


def test_it_makes_a_different_key_each_time(alice) -> None:
    first, second = StringIO(), StringIO()

    call_command("createapikey", "alice", stdout=first)
    call_command("createapikey", "alice", stdout=second)

    assert first.getvalue() != second.getvalue()
    assert ApiKey.objects.filter(user=alice, name="default").count() == 2


def test_it_refuses_an_unknown_user(db) -> None:
    with pytest.raises(CommandError, match="No user named 'mallory'"):
        call_command("createapikey", "mallory", stdout=StringIO())
    assert not ApiKey.objects.exists()


def test_it_makes_a_key_the_api_accepts(alice, client) -> None:
    out = StringIO()
    call_command("createapikey", "alice", stdout=out)

    response = client.get(
        "/api/conversations", headers={"Authorization": f"Bearer {out.getvalue().strip()}"}
    )

    assert response.status_code == 200
