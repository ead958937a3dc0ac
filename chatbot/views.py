from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET

from chatbot.accounts import roles
from chatbot.accounts.access import no_access
from chatbot.runtime.supervisor import read_status


@login_required
def home(request: HttpRequest) -> HttpResponse:
    if request.user.has_perm(roles.USE_CHAT):
        return redirect("chat:index")
    return no_access(request)


# What /healthz shows of each part: enough to see what is down, nothing a visitor could use.
HEALTH_PART_FIELDS = ("state", "restarts", "last_exit_code")


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for the load balancer: the process answers and the database is reachable.

    Under `make run` it also shows each supervised part; "degraded" (still 200, since this process
    serves) means one is restarting, e.g. the model server, and chat says so until it is back.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    status = read_status(Path(settings.SUPERVISOR_STATUS_PATH)) or {"parts": {}}
    parts = {
        str(name): {key: part.get(key) for key in HEALTH_PART_FIELDS}
        for name, part in status["parts"].items()
        if isinstance(part, dict)
    }
    healthy = all(part["state"] == "up" for part in parts.values())
    return JsonResponse({"status": "ok" if healthy else "degraded", "parts": parts})
