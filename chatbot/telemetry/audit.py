"""The audit log's writer: append-only records of admin actions, sensitive reads and sign-ins
(`chatbot.models.AuditEntry`).

`audit_record` is called where the thing happens (a service function that changes settings, a view
that shows personal data), inside the same transaction, so an action rolled back leaves no entry
and an entry never describes something that did not happen. Who and from where come from the
request being served: `audit_context`, a middleware, keeps it in a context variable for the
duration of the request (asgiref copies context variables into the thread a sync view runs in),
so services need no request parameter. Outside a request (a management command, a Celery job)
the caller names the actor, or the entry says nobody.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.contrib.auth.models import AnonymousUser, User
from django.db import models
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

from chatbot.models import AuditEntry

ADMIN, READ, SIGN_IN = (
    AuditEntry.Category.ADMIN,
    AuditEntry.Category.READ,
    AuditEntry.Category.SIGN_IN,
)

# Every action the product records, with its category and how the log page words it. An action
# not listed here is refused (a typo must fail a test, not write an entry nobody can filter).
ACTIONS: dict[str, tuple[str, str]] = {
    "auth.sign_in": (SIGN_IN, "Signed in"),
    "auth.sign_in_failed": (SIGN_IN, "Failed to sign in"),
    "auth.sign_out": (SIGN_IN, "Signed out"),
    "settings.update": (ADMIN, "Changed the answer and grounding settings"),
    "endpoint.save": (ADMIN, "Saved a model in the catalogue"),
    "endpoint.default": (ADMIN, "Made a model the default"),
    "tool.save": (ADMIN, "Changed an agent tool's settings"),
    "routing_rule.save": (ADMIN, "Saved a routing rule"),
    "routing_rule.move": (ADMIN, "Moved a routing rule"),
    "routing_rule.enable": (ADMIN, "Turned a routing rule on or off"),
    "routing_rule.delete": (ADMIN, "Deleted a routing rule"),
    "collection.confidential": (ADMIN, "Marked a collection confidential or not"),
    "collection.regions": (ADMIN, "Changed the regions a collection's passages may go to"),
    "group.regions": (ADMIN, "Changed the regions a group's data may go to"),
    "api_key.regions": (ADMIN, "Changed the regions an API key's requests may go to"),
    "pii_pattern.save": (ADMIN, "Saved a personal-data pattern"),
    "pii_pattern.delete": (ADMIN, "Deleted a personal-data pattern"),
    "collection.create": (ADMIN, "Created a knowledge-base collection"),
    "source.create": (ADMIN, "Added a knowledge-base source"),
    "source.replace": (ADMIN, "Replaced an uploaded source's file"),
    "source.reingest": (ADMIN, "Queued a source's ingestion again"),
    "source.enable": (ADMIN, "Turned a knowledge-base source on or off"),
    "source.delete": (ADMIN, "Deleted a knowledge-base source"),
    "ab_test.save": (ADMIN, "Saved an A/B test"),
    "ab_test.start": (ADMIN, "Started an A/B test"),
    "ab_test.stop": (ADMIN, "Stopped an A/B test"),
    "ab_test.promote": (ADMIN, "Promoted an A/B test's variant"),
    "prompt.draft": (ADMIN, "Made or edited a prompt draft"),
    "judge.save": (ADMIN, "Saved a new version of a judge"),
    "judge.enable": (ADMIN, "Turned a judge on or off"),
    "flag_rule.save": (ADMIN, "Saved a review rule"),
    "flag_rule.enable": (ADMIN, "Turned a review rule on or off"),
    "prompt.publish": (ADMIN, "Published a prompt version"),
    "api_key.create": (ADMIN, "Created an API key"),
    "api_key.revoke": (ADMIN, "Revoked an API key"),
    "user.create": (ADMIN, "Created a person"),
    "user.role": (ADMIN, "Changed a person's role"),
    "user.deactivate": (ADMIN, "Deactivated a person"),
    "user.activate": (ADMIN, "Reactivated a person"),
    "audit.export": (READ, "Exported the audit log"),
    "read.conversation": (READ, "Opened a conversation to review"),
    "read.escalation": (READ, "Opened an escalated conversation"),
    "read.trace": (READ, "Opened a trace with personal data shown"),
    "read.export": (READ, "Downloaded a training export"),
    "retention.policy": (ADMIN, "Changed a retention policy"),
    "retention.run": (ADMIN, "Ran the retention job"),
    "legal_hold.set": (ADMIN, "Put a legal hold"),
    "legal_hold.release": (ADMIN, "Released a legal hold"),
    "person.export": (READ, "Exported a person's data"),
    "person.erase": (ADMIN, "Erased a person's data"),
    "archive.read": (READ, "Read a retention archive"),
    "finetune.start": (ADMIN, "Started a fine-tuning job"),
    "finetune.cancel": (ADMIN, "Cancelled a fine-tuning job"),
    "finetune.promotion_start": (ADMIN, "Started the gated promotion of a fine-tuned model"),
    "finetune.offline_verdict": (ADMIN, "A fine-tuned model's offline experiment was judged"),
    "finetune.abtest": (ADMIN, "Set up the A/B test of a fine-tuned model"),
    "finetune.promote": (ADMIN, "Promoted a fine-tuned model to the default"),
    "finetune.rollback": (ADMIN, "Rolled back a fine-tuned model's promotion"),
    "judge_policy.save": (ADMIN, "Saved a policy for the policy judge"),
    "judge_policy.delete": (ADMIN, "Deleted a policy of the policy judge"),
    "synthetic.generate": (ADMIN, "Started generating synthetic test questions"),
    "synthetic.resume": (ADMIN, "Resumed a synthetic question run"),
    "synthetic.accept": (ADMIN, "Accepted a synthetic question into a dataset"),
    "synthetic.reject": (ADMIN, "Rejected a synthetic question"),
    "weekly_report.recompute": (ADMIN, "Recomputed a weekly report"),
    "weekly_report.post": (ADMIN, "Posted a weekly report to its webhook"),
    "weekly_report.run": (ADMIN, "Asked for the missing weekly reports now"),
}

_request: ContextVar[HttpRequest | None] = ContextVar("audit_request", default=None)

TARGET_REPR_LIMIT = 200


class UnknownAction(ValueError):
    """An action missing from `ACTIONS`."""


def _actor_of(request: HttpRequest | None) -> User | None:
    user = getattr(request, "user", None) if request is not None else None
    if user is None or isinstance(user, AnonymousUser) or not user.is_authenticated:
        return None
    return user


def _ip_of(request: HttpRequest | None) -> str | None:
    # The peer's address as the server saw it; behind a proxy, the proxy's (its access log has the
    # client's). A forwarded header is not trusted here: any client can send one.
    address = request.META.get("REMOTE_ADDR") if request is not None else None
    return address or None


def audit_record(
    action: str,
    *,
    target: models.Model | None = None,
    details: dict[str, Any] | None = None,
    actor: User | None = None,
    request: HttpRequest | None = None,
) -> AuditEntry:
    """Append one entry. `actor` defaults to the person signed in on the request being served;
    `target` is the record acted on or read."""
    if action not in ACTIONS:
        raise UnknownAction(f"{action!r} is not an audited action (chatbot.telemetry.audit).")
    request = request or _request.get()
    actor = actor or _actor_of(request)
    return AuditEntry.objects.create(
        category=ACTIONS[action][0],
        action=action,
        actor_id=actor.pk if actor is not None else None,
        actor_name=actor.get_username() if actor is not None else "",
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_repr=str(target)[:TARGET_REPR_LIMIT] if target is not None else "",
        details=details or {},
        ip=_ip_of(request),
        request_path=(request.path[:300] if request is not None else ""),
    )


def _plain(value: Any) -> Any:
    """A value as JSON holds it: model instances by primary key, the rest as text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def audit_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """{field: [old, new]} for each field of `after` whose value differs from `before` (a field
    missing from `before`, on a new record, is listed with old None)."""
    return {
        field: [_plain(before.get(field)), _plain(value)]
        for field, value in after.items()
        if _plain(before.get(field)) != _plain(value)
    }


def action_label(action: str) -> str:
    return ACTIONS.get(action, ("", action))[1]


@sync_and_async_middleware
def audit_context(get_response: Callable[[HttpRequest], Any]) -> Callable[[HttpRequest], Any]:
    """Keep the request being served where `audit_record` finds it."""
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            token = _request.set(request)
            try:
                return await get_response(request)
            finally:
                _request.reset(token)

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponseBase:
        token = _request.set(request)
        try:
            return get_response(request)
        finally:
            _request.reset(token)

    return middleware


# --- sign-ins (django.contrib.auth's signals; connected in ChatbotConfig.ready) ----------------


def _signed_in(sender: object, request: HttpRequest | None, user: User, **kwargs: object) -> None:
    audit_record("auth.sign_in", actor=user, request=request)


def _signed_out(
    sender: object, request: HttpRequest | None, user: User | None, **kwargs: object
) -> None:
    audit_record("auth.sign_out", actor=user, request=request)


def _sign_in_failed(
    sender: object,
    credentials: dict[str, Any],
    request: HttpRequest | None = None,
    **kwargs: object,
) -> None:
    # Django has already masked the password in `credentials`; only the name tried is kept.
    tried = str(credentials.get("username", ""))[:150]
    audit_record("auth.sign_in_failed", details={"username": tried}, request=request)


def signals_connect() -> None:
    from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed

    user_logged_in.connect(_signed_in, dispatch_uid="chatbot.audit.sign_in")
    user_logged_out.connect(_signed_out, dispatch_uid="chatbot.audit.sign_out")
    user_login_failed.connect(_sign_in_failed, dispatch_uid="chatbot.audit.sign_in_failed")
