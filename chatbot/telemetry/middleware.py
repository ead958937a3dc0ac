"""Request latency for /metrics, labelled by URL pattern (not path, so ids do not multiply series)
and by method from a fixed list (a client can send any token as a method)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

from chatbot.telemetry.metrics import REQUEST_SECONDS

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _observe(request: HttpRequest, response: HttpResponseBase, started: float) -> None:
    match = getattr(request, "resolver_match", None)
    route = str(match.route) if match is not None and match.route else "unmatched"
    status = f"{response.status_code // 100}xx"
    method = request.method if request.method in METHODS else "other"
    REQUEST_SECONDS.labels(method, route, status).observe(time.perf_counter() - started)


@sync_and_async_middleware
def request_metrics(get_response: Callable[[HttpRequest], Any]) -> Callable[[HttpRequest], Any]:
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            started = time.perf_counter()
            response = await get_response(request)
            _observe(request, response, started)
            return response

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        response = get_response(request)
        _observe(request, response, started)
        return response

    return middleware
