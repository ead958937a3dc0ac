"""/metrics: the Prometheus counters of this process (`chatbot.telemetry.metrics`).

Access: a scraper sends `Authorization: Bearer <METRICS_TOKEN>`; with no token configured, or
without the header, only a signed-in admin (manage settings) may read it.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from chatbot.accounts import roles
from chatbot.accounts.access import no_access


def _bearer(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = _bearer(request)
    expected = settings.METRICS_TOKEN
    allowed = bool(token and expected and hmac.compare_digest(token, expected))
    if not allowed and token:
        return HttpResponse("Wrong metrics token.\n", status=401, content_type="text/plain")
    if not allowed:
        if not request.user.is_authenticated:
            response = HttpResponse(
                "Send the metrics token as 'Authorization: Bearer <token>', or sign in as an admin.\n",
                status=401,
                content_type="text/plain",
            )
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
        if not request.user.has_perm(roles.MANAGE_SETTINGS):
            return no_access(request)
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
