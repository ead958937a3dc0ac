"""Writes for users, roles and API keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

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


ALL_SCOPES: tuple[str, ...] = tuple(ApiKey.Scope.values)
# How often a key's "last used" is written: once a minute per key, not once per request.
LAST_USED_RESOLUTION_S = 60


class KeyRefused(Exception):
    """A key that exists but may not be used (expired, revoked, its owner deactivated): the
    message says which, so the caller knows to make a new key rather than re-check a typo."""


@dataclass(frozen=True)
class NewApiKey:
    key: ApiKey
    plaintext: str


def api_key_create(
    *,
    user: User,
    name: str = "default",
    scopes: Iterable[str] = ALL_SCOPES,
    expires_at: datetime | None = None,
) -> NewApiKey:
    """Make a key; the plaintext is returned once and only its hash is kept."""
    wanted = set(scopes)
    if not wanted or not wanted <= set(ALL_SCOPES):
        raise ValueError(f"Scopes must be some of {', '.join(ALL_SCOPES)}.")
    chosen = sorted(wanted, key=ALL_SCOPES.index)
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    plaintext = f"{API_KEY_PREFIX}{prefix}.{secret}"
    key = ApiKey.objects.create(
        user=user,
        name=name,
        prefix=prefix,
        hashed_secret=_hash(plaintext),
        scopes=chosen,
        expires_at=expires_at,
    )
    return NewApiKey(key=key, plaintext=plaintext)


def api_key_check(plaintext: str) -> ApiKey | None:
    """The usable key a secret belongs to; None for anything malformed or unknown. Raises
    KeyRefused for a real key that is revoked, expired or whose owner was deactivated."""
    if not plaintext.startswith(API_KEY_PREFIX) or "." not in plaintext:
        return None
    prefix = plaintext[len(API_KEY_PREFIX) :].split(".", 1)[0]
    key = ApiKey.objects.select_related("user").filter(prefix=prefix).first()
    if key is None or not hmac.compare_digest(key.hashed_secret, _hash(plaintext)):
        return None
    if key.revoked_at is not None:
        raise KeyRefused(
            f"This API key ('{key.name}') is not valid any more: it was revoked on {key.revoked_at:%Y-%m-%d %H:%M} UTC. "
            "Create a new one on your API keys page."
        )
    if key.expires_at is not None and key.expires_at <= timezone.now():
        raise KeyRefused(
            f"This API key ('{key.name}') is not valid any more: it expired on {key.expires_at:%Y-%m-%d %H:%M} UTC. "
            "Create a new one on your API keys page."
        )
    if not key.user.is_active:
        raise KeyRefused(
            "This API key is not valid any more: the account it belongs to is deactivated."
        )
    now = timezone.now()
    if (
        key.last_used_at is None
        or (now - key.last_used_at).total_seconds() > LAST_USED_RESOLUTION_S
    ):
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


def api_key_authenticate(plaintext: str) -> User | None:
    """The active user a usable key belongs to, or None (for callers that need no reason)."""
    try:
        key = api_key_check(plaintext)
    except KeyRefused:
        return None
    return key.user if key is not None else None


def api_key_allows(key: ApiKey, *, method: str, scope: str) -> bool:
    """Whether a key may make this request: a read (GET) with the read-only scope, or any request
    to an endpoint of the given scope (chat or search) with that scope."""
    if method in ("GET", "HEAD") and ApiKey.Scope.READ_ONLY in key.scopes:
        return True
    return scope in key.scopes


def api_key_revoke(*, key: ApiKey) -> bool:
    """Revoke a key; False when it was revoked already (nothing changed, nothing to record)."""
    return bool(ApiKey.objects.filter(pk=key.pk, revoked_at=None).update(revoked_at=timezone.now()))


# --- people and roles (the console's People page; audited there, one layer up) ------------------

ROLES: tuple[str, ...] = tuple(ROLE_PERMISSIONS)


class PeopleError(ValueError):
    """A change to people the product refuses, in words for the admin who tried it."""


def role_of(user: User) -> str | None:
    """The person's role (a role group), or None for no access."""
    names = {group.name for group in user.groups.all()}
    return next((role for role in ROLES if role in names), None)


def _active_admins_besides(user: User) -> bool:
    return User.objects.filter(is_active=True, groups__name=ADMIN).exclude(pk=user.pk).exists()


def _guard_last_admin(*, user: User, by: User, change: str) -> None:
    """An admin may not demote or deactivate themself, nor leave the product with no active admin
    (nobody could then give the role back without a shell)."""
    if user.pk == by.pk:
        raise PeopleError(f"You cannot {change} yourself: ask another admin to do it.")
    if role_of(user) == ADMIN and user.is_active and not _active_admins_besides(user):
        raise PeopleError(
            f"{user.username} is the only active admin: make someone else admin first."
        )


def user_invite(*, username: str, full_name: str, email: str, role: str | None) -> NewPerson:
    """Create a person with a generated temporary password, returned once (never stored in
    plain text). Nobody is emailed: the admin passes the password on."""
    if User.objects.filter(username__iexact=username).exists():
        raise PeopleError(f"There is already a person named {username!r}.")
    if role is not None and role not in ROLES:
        raise PeopleError(f"Unknown role {role!r}.")
    password = secrets.token_urlsafe(12)
    with transaction.atomic():
        user = user_create(username=username, password=password, role=role, full_name=full_name)
        user.email = email
        user.save(update_fields=["email"])
    return NewPerson(user=user, password=password)


@dataclass(frozen=True)
class NewPerson:
    user: User
    password: str


def user_role_set(*, user: User, role: str | None, by: User) -> str | None:
    """Give the person exactly this role (None: no access); returns the role they had."""
    if role is not None and role not in ROLES:
        raise PeopleError(f"Unknown role {role!r}.")
    before = role_of(user)
    if before == ADMIN and role != ADMIN:
        _guard_last_admin(user=user, by=by, change="demote")
    with transaction.atomic():
        user.groups.set(Group.objects.filter(name=role) if role else [])
        user.is_staff = role == ADMIN
        user.save(update_fields=["is_staff"])
    return before


def user_active_set(*, user: User, active: bool, by: User) -> None:
    """Deactivate (or reactivate) a person. A deactivated person's sessions stop working at their
    next request (Django's backend refuses inactive users) and so do their keys
    (`api_key_check`); their keys are left as they were, so reactivating restores them."""
    if not active:
        _guard_last_admin(user=user, by=by, change="deactivate")
    user.is_active = active
    user.save(update_fields=["is_active"])
