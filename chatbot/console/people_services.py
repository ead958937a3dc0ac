"""Audited writes for people and API keys: the accounts services do the change, these record it in
the same transaction (the audit log sits a layer above accounts) and, for a change to a person's
access, tell their open chat sockets once it is committed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from chatbot.accounts import live
from chatbot.accounts.services import (
    NewApiKey,
    NewPerson,
    api_key_create,
    api_key_revoke,
    user_active_set,
    user_invite,
    user_role_set,
)
from chatbot.models import ApiKey
from chatbot.telemetry.audit import audit_record


def _key_details(key: ApiKey) -> dict[str, Any]:
    return {
        "owner": key.user.get_username(),
        "name": key.name,
        "prefix": key.prefix,
        "scopes": list(key.scopes),
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
    }


@transaction.atomic
def key_create(
    *, user: User, name: str, scopes: list[str], expires_at: datetime | None
) -> NewApiKey:
    new = api_key_create(user=user, name=name, scopes=scopes, expires_at=expires_at)
    audit_record("api_key.create", target=new.key, details=_key_details(new.key))
    return new


@transaction.atomic
def key_revoke(*, key: ApiKey) -> bool:
    """Revoke and record; False (and nothing recorded) when it was revoked already."""
    if not api_key_revoke(key=key):
        return False
    audit_record("api_key.revoke", target=key, details=_key_details(key))
    return True


def _tell_sockets(user: User) -> None:
    user_id = user.pk
    transaction.on_commit(lambda: live.account_changed(user_id))


@transaction.atomic
def person_invite(*, username: str, full_name: str, email: str, role: str | None) -> NewPerson:
    new = user_invite(username=username, full_name=full_name, email=email, role=role)
    audit_record(
        "user.create",
        target=new.user,
        details={"username": username, "email": email, "role": role or "none"},
    )
    return new


@transaction.atomic
def person_role_set(*, user: User, role: str | None, by: User) -> None:
    before = user_role_set(user=user, role=role, by=by)
    if before == role:
        return
    audit_record("user.role", target=user, details={"role": [before or "none", role or "none"]})
    _tell_sockets(user)


@transaction.atomic
def person_active_set(*, user: User, active: bool, by: User) -> None:
    if user.is_active == active:
        return
    user_active_set(user=user, active=active, by=by)
    audit_record("user.activate" if active else "user.deactivate", target=user)
    _tell_sockets(user)
