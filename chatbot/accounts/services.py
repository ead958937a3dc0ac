"""Writes for users, roles and API keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.utils import timezone

from chatbot.accounts.roles import ADMIN, DEMO_USERS, ROLE_PERMISSIONS
from chatbot.models import ApiKey, Capability

API_KEY_PREFIX = "sk-sa-"


def roles_ensure(*, using: str = "default") -> None:
    """Create the role groups with exactly their permissions (idempotent; runs after migrate)."""
    content_type = ContentType.objects.db_manager(using).get_for_model(
        Capability, for_concrete_model=False
    )
    perms = {}
    for codename, label in Capability._meta.permissions:
        perm, _ = Permission.objects.db_manager(using).get_or_create(
            content_type=content_type, codename=codename, defaults={"name": label}
        )
        perms[codename] = perm
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.db_manager(using).get_or_create(name=role)
        group.permissions.set([perms[c] for c in codenames])


@transaction.atomic
def user_create(*, username: str, password: str, role: str | None, full_name: str = "") -> User:
    """Create or update a user with exactly the given role (None: no access)."""
    first, _, last = full_name.partition(" ")
    user, _ = User.objects.get_or_create(username=username)
    user.first_name, user.last_name = first, last
    user.email = f"{username}@example.com"
    user.is_staff = role == ADMIN
    user.set_password(password)
    user.save()
    user.groups.set(Group.objects.filter(name=role) if role else [])
    return user


def demo_users_ensure(*, password: str) -> list[User]:
    roles_ensure()
    return [
        user_create(username=name, password=password, role=role, full_name=full)
        for name, role, full in DEMO_USERS
    ]


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class NewApiKey:
    key: ApiKey
    plaintext: str


def api_key_create(*, user: User, name: str = "default") -> NewApiKey:
    """Make a key; the plaintext is returned once and only its hash is kept."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    plaintext = f"{API_KEY_PREFIX}{prefix}.{secret}"
    key = ApiKey.objects.create(user=user, name=name, prefix=prefix, hashed_secret=_hash(plaintext))
    return NewApiKey(key=key, plaintext=plaintext)


def api_key_authenticate(plaintext: str) -> User | None:
    """The active user a key belongs to, or None for anything malformed, unknown or revoked."""
    if not plaintext.startswith(API_KEY_PREFIX) or "." not in plaintext:
        return None
    prefix = plaintext[len(API_KEY_PREFIX) :].split(".", 1)[0]
    key = ApiKey.objects.select_related("user").filter(prefix=prefix, revoked_at=None).first()
    if key is None or not hmac.compare_digest(key.hashed_secret, _hash(plaintext)):
        return None
    if not key.user.is_active:
        return None
    now = timezone.now()
    # Coarse last-used stamp: one write a minute at most per key, not one per request.
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    user: User = key.user
    return user


def api_key_revoke(*, key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk, revoked_at=None).update(revoked_at=timezone.now())
