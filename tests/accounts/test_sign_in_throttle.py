"""Failed sign-ins are throttled (django-axes): after AXES_FAILURE_LIMIT failures for one username
from one address, that pair is told to wait, even with the right password; each failure is in the
audit log."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from chatbot.models import AuditEntry
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _sign_in(client: Client, username: str, password: str):
    return client.post(reverse("login"), {"username": username, "password": password})


def test_it_locks_out_a_username_after_too_many_failures(alice, settings) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    client = Client()

    first, second = (_sign_in(client, "alice", f"wrong-{n}") for n in range(2))
    third = _sign_in(client, "alice", "wrong-3")
    right = _sign_in(client, "alice", PASSWORD)

    assert first.status_code == second.status_code == 200, "a failure shows the form again"
    for locked in (third, right):
        assert locked.status_code == 429
        body = locked.content.decode()
        assert "Too many failed sign-ins" in body and "wait 15 minutes" in body
        assert locked["Retry-After"] == str(15 * 60)
    assert "_auth_user_id" not in client.session, "the right password does not get in"
    failures = AuditEntry.objects.filter(action="auth.sign_in_failed")
    assert failures.count() == 4
    assert {e.details["username"] for e in failures} == {"alice"}


def test_it_keeps_other_usernames_and_resets_on_success(alice, rita, settings) -> None:
    settings.AXES_FAILURE_LIMIT = 2
    client = Client()

    _sign_in(client, "alice", "wrong")
    assert _sign_in(client, "alice", PASSWORD).status_code == 302, "one failure, then in"
    client.post(reverse("logout"))
    _sign_in(client, "alice", "wrong")
    assert _sign_in(client, "alice", PASSWORD).status_code == 302, "success reset the count"
    client.post(reverse("logout"))

    _sign_in(client, "rita", "wrong")
    assert _sign_in(client, "rita", "wrong").status_code == 429
    assert _sign_in(client, "alice", PASSWORD).status_code == 302, "only rita's pair waits"
