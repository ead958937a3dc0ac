from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET

from chatbot.accounts import roles
from chatbot.accounts.access import no_access


@login_required
def home(request: HttpRequest) -> HttpResponse:
    if request.user.has_perm(roles.USE_CHAT):
        return redirect("chat:index")
    return no_access(request)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for the load balancer: the process answers and the database is reachable."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
