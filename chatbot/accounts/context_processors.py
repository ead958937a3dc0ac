from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from chatbot.accounts import roles


def navigation(request: HttpRequest) -> dict[str, Any]:
    """The areas the signed-in user may open, for the top bar; `active` marks the current one."""
    user = request.user
    areas: list[dict[str, Any]] = []
    if user.is_authenticated:
        if user.has_perm(roles.USE_CHAT):
            areas.append({"key": "chat", "label": "Chat", "url": "/chat/"})
        if user.has_perm(roles.VIEW_KNOWLEDGE):
            areas.append({"key": "knowledge", "label": "Knowledge", "url": "/knowledge/"})
        if user.has_perm(roles.REVIEW_ANSWERS):
            areas.append({"key": "review", "label": "Review", "url": "/review/"})
        if user.has_perm(roles.VIEW_DASHBOARD):
            areas.append({"key": "dashboard", "label": "Dashboard", "url": "/dashboard/"})
        if user.has_perm(roles.MANAGE_SETTINGS):
            areas.append({"key": "console", "label": "Models", "url": "/console/models/"})
    for area in areas:
        area["active"] = request.path.startswith(area["url"])
    return {"nav_areas": areas, "app_version": settings.VERSION}
