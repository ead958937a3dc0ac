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
from django.contrib.auth import middleware as auth
from django.http import HttpRequest
from django.middleware import clickjacking, common, csrf, security
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
