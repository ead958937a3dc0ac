"""The People page (admins only) and everyone's own API keys page: what each shows, what each
changes, who is refused, and the audit entry each change leaves."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chatbot.accounts.services import (
    PeopleError,
    api_key_create,
    role_of,
    user_active_set,
    user_role_set,
)
from chatbot.models import ApiKey, AuditEntry
from tests.api.conftest import bearer

pytestmark = pytest.mark.django_db

ClientAs = Callable[[User], Client]


def _entries(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("pk"))


def _people_urls(person: User, key: ApiKey) -> list[tuple[str, str]]:
    return [
        ("get", reverse("console:people")),
        ("get", reverse("console:person_new")),
        ("post", reverse("console:person_new")),
        ("get", reverse("console:person", args=[person.pk])),
        ("post", reverse("console:person_role", args=[person.pk])),
        ("post", reverse("console:person_active", args=[person.pk])),
        ("post", reverse("console:person_key_revoke", args=[person.pk, key.pk])),
    ]


@pytest.mark.parametrize("who", ["nora", "alice", "rita"])
def test_it_refuses_everyone_but_admins_on_every_people_page(
    who, cast, client_as: ClientAs
) -> None:
    key = api_key_create(user=cast["alice"]).key
    client = client_as(cast[who])

    for method, url in _people_urls(cast["alice"], key):
        body = {"role": "admin", "active": "0", "username": "mallory"}
        response = getattr(client, method)(url, body) if method == "post" else client.get(url)
        assert response.status_code == 403, (who, url)

    assert role_of(cast["alice"]) == "agent" and cast["alice"].is_active
    key.refresh_from_db()
    assert key.revoked_at is None
    assert not User.objects.filter(username="mallory").exists()


def test_it_sends_anonymous_visitors_to_sign_in(alice) -> None:
    response = Client().get(reverse("console:people"))
    assert response.status_code == 302 and reverse("login") in response["Location"]


def test_it_lists_people_with_role_status_and_key_count(adam, alice, nora, client_as) -> None:
    api_key_create(user=alice)
    revoked = api_key_create(user=alice).key
    revoked.revoked_at = revoked.created_at
    revoked.save()
    User.objects.filter(pk=nora.pk).update(is_active=False)

    response = client_as(adam).get(reverse("console:people"))

    assert response.status_code == 200
    rows = {row["person"].username: row for row in response.context["rows"]}
    assert {name: row["role"] for name, row in rows.items()} == {
        "adam": "admin",
        "alice": "agent",
        "nora": "none",
        "rita": "reviewer",
    }
    assert rows["alice"]["person"].keys == 1, "revoked keys are not counted"
    html = response.content.decode()
    assert "Deactivated" in html and "alice@example.com" in html
    assert reverse("console:person", args=[alice.pk]) in html


def test_it_creates_a_person_with_a_temporary_password_shown_once(adam, client_as) -> None:
    client = client_as(adam)

    response = client.post(
        reverse("console:person_new"),
        {
            "username": "penny",
            "full_name": "Penny <b>New</b>",
            "email": "p@x.org",
            "role": "reviewer",
        },
    )

    assert response.status_code == 200
    password = response.context["new"].password
    assert password in response.content.decode()
    assert "No email was sent" in response.content.decode()
    penny = User.objects.get(username="penny")
    assert role_of(penny) == "reviewer" and penny.email == "p@x.org"
    assert penny.check_password(password) and password not in penny.password
    page = client.get(reverse("console:person", args=[penny.pk])).content.decode()
    assert password not in page, "shown once"
    assert "Penny &lt;b&gt;New&lt;/b&gt;" in page
    [entry] = _entries("user.create")
    assert entry.actor_id == adam.pk and entry.target_id == str(penny.pk)
    assert entry.details == {"username": "penny", "email": "p@x.org", "role": "reviewer"}


def test_it_refuses_a_username_that_is_taken(adam, client_as) -> None:
    response = client_as(adam).post(
        reverse("console:person_new"), {"username": "ALICE", "role": "agent"}
    )
    assert response.status_code == 400
    assert "already a person named" in response.content.decode()
    assert not _entries("user.create")


def test_it_changes_a_role_and_records_it(adam, alice, client_as) -> None:
    response = client_as(adam).post(
        reverse("console:person_role", args=[alice.pk]), {"role": "reviewer"}
    )

    assert response.status_code == 302
    alice.refresh_from_db()
    assert role_of(alice) == "reviewer"
    [entry] = _entries("user.role")
    assert entry.details == {"role": ["agent", "reviewer"]} and entry.actor_id == adam.pk

    client_as(adam).post(reverse("console:person_role", args=[alice.pk]), {"role": "none"})
    alice = User.objects.get(pk=alice.pk)
    assert role_of(alice) is None and not alice.has_perm("chatbot.use_chat")
    assert [e.details["role"] for e in _entries("user.role")][-1] == ["reviewer", "none"]


def test_it_makes_an_admin_staff_and_back(adam, alice, client_as) -> None:
    client_as(adam).post(reverse("console:person_role", args=[alice.pk]), {"role": "admin"})
    alice.refresh_from_db()
    assert alice.is_staff and role_of(alice) == "admin"
    client_as(adam).post(reverse("console:person_role", args=[alice.pk]), {"role": "agent"})
    alice.refresh_from_db()
    assert not alice.is_staff


def test_an_admin_cannot_demote_or_deactivate_themself(adam, alice, client_as) -> None:
    client = client_as(adam)
    client_as(adam).post(reverse("console:person_role", args=[alice.pk]), {"role": "admin"})

    demoted = client.post(
        reverse("console:person_role", args=[adam.pk]), {"role": "agent"}, follow=True
    )
    deactivated = client.post(
        reverse("console:person_active", args=[adam.pk]), {"active": "0"}, follow=True
    )

    adam.refresh_from_db()
    assert role_of(adam) == "admin" and adam.is_active
    assert "cannot demote yourself" in demoted.content.decode()
    assert "cannot deactivate yourself" in deactivated.content.decode()
    assert not _entries("user.deactivate")
    assert [e.details for e in _entries("user.role")] == [{"role": ["agent", "admin"]}]


def test_it_refuses_to_leave_no_active_admin(adam, alice) -> None:
    """Enforced in the service, whoever calls it: with adam the only active admin, nobody may
    demote or deactivate him until someone else is admin."""
    with pytest.raises(PeopleError, match="only active admin"):
        user_role_set(user=adam, role="agent", by=alice)
    with pytest.raises(PeopleError, match="only active admin"):
        user_active_set(user=adam, active=False, by=alice)

    user_role_set(user=alice, role="admin", by=adam)
    user_active_set(user=adam, active=False, by=alice)
    adam.refresh_from_db()
    assert not adam.is_active


def test_deactivating_stops_sessions_and_keys_and_is_recorded(adam, alice, client_as) -> None:
    alices = client_as(alice)
    key = api_key_create(user=alice).plaintext
    assert alices.get("/chat/").status_code == 200

    client_as(adam).post(reverse("console:person_active", args=[alice.pk]), {"active": "0"})

    assert alices.get("/chat/").status_code == 302, "her session no longer signs her in"
    refused = Client().get("/api/conversations", headers=bearer(key))
    assert refused.status_code == 401 and "deactivated" in refused.json()["detail"]
    [entry] = _entries("user.deactivate")
    assert entry.target_id == str(alice.pk) and entry.actor_id == adam.pk

    client_as(adam).post(reverse("console:person_active", args=[alice.pk]), {"active": "1"})
    assert Client().get("/api/conversations", headers=bearer(key)).status_code == 200
    assert len(_entries("user.activate")) == 1


def test_an_admin_sees_and_revokes_a_persons_keys(adam, alice, rita, client_as) -> None:
    alices = api_key_create(user=alice, name="alice-ci")
    ritas = api_key_create(user=rita, name="rita-ci").key

    page = client_as(adam).get(reverse("console:person", args=[alice.pk])).content.decode()
    assert "alice-ci" in page and alices.key.prefix in page and "rita-ci" not in page
    assert alices.plaintext not in page

    wrong_person = client_as(adam).post(
        reverse("console:person_key_revoke", args=[alice.pk, ritas.pk])
    )
    assert wrong_person.status_code == 404
    client_as(adam).post(reverse("console:person_key_revoke", args=[alice.pk, alices.key.pk]))

    alices.key.refresh_from_db()
    assert alices.key.revoked_at is not None
    [entry] = _entries("api_key.revoke")
    assert entry.actor_id == adam.pk and entry.details["owner"] == "alice"
    assert Client().get("/api/conversations", headers=bearer(alices.plaintext)).status_code == 401


# --- the API keys page (user menu) ----------------------------------------------------------------


def test_it_shows_the_keys_link_to_people_with_a_role_only(alice, nora, client_as) -> None:
    assert reverse("api_keys") in client_as(alice).get("/chat/").content.decode()
    assert reverse("api_keys") not in client_as(nora).get("/").content.decode()


def test_it_refuses_nora_the_keys_page(nora, alice, client_as) -> None:
    key = api_key_create(user=alice).key
    client = client_as(nora)

    assert client.get(reverse("api_keys")).status_code == 403
    assert client.post(reverse("api_keys"), {"name": "x", "scopes": ["chat"]}).status_code == 403
    assert client.post(reverse("api_key_revoke", args=[key.pk])).status_code == 403
    assert not ApiKey.objects.filter(user=nora).exists()


def test_it_makes_a_key_showing_the_secret_once(alice, client_as) -> None:
    client = client_as(alice)

    made = client.post(
        reverse("api_keys"),
        {"name": "CI <bot>", "scopes": ["chat", "search"], "expires_days": "30"},
    )

    assert made.status_code == 200
    secret = made.context["created"].plaintext
    assert secret in made.content.decode() and "CI &lt;bot&gt;" in made.content.decode()
    key = ApiKey.objects.get(user=alice)
    assert key.scopes == ["chat", "search"] and key.expires_at is not None
    assert secret not in client.get(reverse("api_keys")).content.decode()
    assert Client().get("/api/conversations", headers=bearer(secret)).status_code == 200
    [entry] = _entries("api_key.create")
    assert entry.actor_id == alice.pk and entry.details["scopes"] == ["chat", "search"]
    assert secret not in str(entry.details)


def test_it_refuses_a_key_without_scopes(alice, client_as) -> None:
    response = client_as(alice).post(reverse("api_keys"), {"name": "none"})
    assert response.status_code == 400
    assert not ApiKey.objects.exists() and not _entries("api_key.create")


def test_it_lists_only_your_own_keys_and_revokes_only_yours(alice, rita, client_as) -> None:
    mine = api_key_create(user=alice, name="mine").key
    hers = api_key_create(user=rita, name="ritas").key
    client = client_as(alice)

    page = client.get(reverse("api_keys")).content.decode()
    assert "mine" in page and "ritas" not in page

    assert client.post(reverse("api_key_revoke", args=[hers.pk])).status_code == 404
    assert client.post(reverse("api_key_revoke", args=[mine.pk])).status_code == 302
    hers.refresh_from_db()
    mine.refresh_from_db()
    assert hers.revoked_at is None and mine.revoked_at is not None
    assert "Revoked" in client.get(reverse("api_keys")).content.decode()
    [entry] = _entries("api_key.revoke")
    assert entry.target_id == str(mine.pk)
    client.post(reverse("api_key_revoke", args=[mine.pk]))
    assert len(_entries("api_key.revoke")) == 1, "revoking twice records once"
