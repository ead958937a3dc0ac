"""Django's own middleware whose hooks do no I/O, run inline in the async request path.

Under daphne every request goes through the middleware chain in async mode. A middleware built on
Django's `MiddlewareMixin` then runs each of its hooks through `sync_to_async`: a hop to the
request's thread and back for `process_request`, another for `process_response`. The chain below
made a dozen such hops before a view ran and as many after, on every request: on the path of every
`/v1` answer's first token (tests/benchmarks/README.md, bench_ttft).

The hooks of these six only read and write the request and the response (headers, cookies,
a redirect, a lazy `request.user` that touches the database only when read), so they run
in the event loop directly. Session and messages, whose hooks may read or save the session in the
database, keep Django's hops; so do CSRF's `process_view` (Django's handler adapts it).
"""

from __future__ import annotations

from typing import Any

from csp import middleware as csp
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.core import checks
from django.core.checks.security import base
from django.core.checks.security import csrf as csrf_checks
from django.http import HttpRequest
from django.middleware import clickjacking, common, csrf, security
from django.test.utils import override_settings
from django.utils.deprecation import MiddlewareMixin


class InlineHooks(MiddlewareMixin):
    """`MiddlewareMixin`'s async path without the thread hops: for hooks that do no I/O."""

    async def __acall__(self, request: HttpRequest) -> Any:
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)  # type: ignore[misc]
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response


class SecurityMiddleware(InlineHooks, security.SecurityMiddleware):
    pass


class CommonMiddleware(InlineHooks, common.CommonMiddleware):
    pass


class CsrfViewMiddleware(InlineHooks, csrf.CsrfViewMiddleware):
    pass


class AuthenticationMiddleware(InlineHooks, auth.AuthenticationMiddleware):
    pass


class XFrameOptionsMiddleware(InlineHooks, clickjacking.XFrameOptionsMiddleware):
    pass


class CSPMiddleware(InlineHooks, csp.CSPMiddleware):
    pass


# Ours for Django's: its deploy checks find these three by their dotted paths, and skip the checks
# of their settings (HSTS, SSL redirect, nosniff, referrer policy, X-Frame-Options, secure CSRF
# cookie) when they are missing. Their "not in MIDDLEWARE" warnings are silenced in settings; the
# check below runs those checks again with ours counted as Django's, so none is lost.
STANDS_IN_FOR = {
    "chatbot.runtime.middleware.SecurityMiddleware": "django.middleware.security.SecurityMiddleware",
    "chatbot.runtime.middleware.XFrameOptionsMiddleware": (
        "django.middleware.clickjacking.XFrameOptionsMiddleware"
    ),
    "chatbot.runtime.middleware.CsrfViewMiddleware": "django.middleware.csrf.CsrfViewMiddleware",
}
SILENCED = ("security.W001", "security.W002", "security.W003")


@checks.register(checks.Tags.security, deploy=True)
def djangos_checks_with_ours(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    found: list[checks.CheckMessage] = []
    mapped = [STANDS_IN_FOR.get(path, path) for path in settings.MIDDLEWARE]
    with override_settings(MIDDLEWARE=mapped):
        for check in (
            base.check_security_middleware,
            base.check_xframe_options_middleware,
            csrf_checks.check_csrf_middleware,
            base.check_sts,
            base.check_sts_include_subdomains,
            base.check_sts_preload,
            base.check_content_type_nosniff,
            base.check_ssl_redirect,
            base.check_xframe_deny,
            base.check_referrer_policy,
            base.check_cross_origin_opener_policy,
            csrf_checks.check_csrf_cookie_secure,
        ):
            found += check(app_configs)
    # The silenced three come back under our own ids (a silenced id would hide them again).
    return [
        checks.Warning(m.msg, hint=m.hint, id=f"chatbot.{m.id}") if m.id in SILENCED else m
        for m in found
    ]
