"""Permissions come from one precompiled statement (chatbot.accounts.backends) and say exactly what
Django's ModelBackend says: through a role (group), granted to the person directly, none for an
inactive account, all for a superuser; sign-in is left to ModelBackend."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group, Permission, User
from django.test import RequestFactory

from chatbot.accounts import roles
from chatbot.accounts.backends import PermissionsBackend
from chatbot.accounts.roles import AGENT, REVIEWER
from chatbot.accounts.services import roles_ensure, user_create

pytestmark = pytest.mark.django_db


def _fresh(user: User) -> User:
    return User.objects.get(pk=user.pk)  # no cached permissions


def _both(user: User) -> tuple[set[str], set[str]]:
    return (
        PermissionsBackend().get_all_permissions(_fresh(user)),
        ModelBackend().get_all_permissions(_fresh(user)),
    )


def test_it_reads_the_same_permissions_as_model_backend_in_one_query(
    django_assert_num_queries: Any,
) -> None:
    roles_ensure()
    agent = user_create(username="perm-agent", password="perm-password-1", role=AGENT)
    reviewer = user_create(username="perm-reviewer", password="perm-password-1", role=REVIEWER)
    reviewer.user_permissions.add(Permission.objects.get(codename="view_auditentry"))

    for user in (agent, reviewer):
        ours, django = _both(user)
        assert ours == django and ours
    assert "chatbot.view_auditentry" in _both(reviewer)[0]

    fresh = _fresh(agent)
    with django_assert_num_queries(1):
        assert fresh.has_perm(roles.USE_CHAT)
        assert fresh.has_perm(roles.USE_CHAT)  # cached on the object, as ModelBackend does


def test_it_follows_role_changes_inactive_accounts_and_superusers() -> None:
    roles_ensure()
    agent = user_create(username="perm-agent", password="perm-password-1", role=AGENT)
    agent.groups.remove(Group.objects.get(name=AGENT))
    assert not _fresh(agent).has_perm(roles.USE_CHAT), "the role removed: no chat"

    agent.groups.add(Group.objects.get(name=AGENT))
    User.objects.filter(pk=agent.pk).update(is_active=False)
    assert PermissionsBackend().get_all_permissions(_fresh(agent)) == set()

    boss = User.objects.create_superuser("perm-boss", password="perm-password-1")
    ours, django = _both(boss)
    assert ours == django and len(ours) == Permission.objects.count()


def test_it_signs_no_one_in() -> None:
    roles_ensure()
    user_create(username="perm-agent", password="perm-password-1", role=AGENT)

    request = RequestFactory().post("/accounts/login/")
    ours: object = PermissionsBackend().authenticate(request, "perm-agent", "perm-password-1")
    assert ours is None
    backend = PermissionsBackend()
    assert asyncio.run(backend.aauthenticate(request, "perm-agent", "perm-password-1")) is None
    signed_in = authenticate(request, username="perm-agent", password="perm-password-1")
    assert signed_in is not None
    assert signed_in.backend == "django.contrib.auth.backends.ModelBackend"
