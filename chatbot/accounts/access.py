"""Access checks shared by views, consumers and API routes."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.models import User
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def signed_in_user(request: HttpRequest) -> User:
    """The person behind a request that `permission_required` has let through."""
    assert isinstance(request.user, User)
    return request.user


def no_access(request: HttpRequest) -> HttpResponse:
    return render(request, "no_access.html", status=403)


def permission_required(
    perm: str,
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Anonymous users go to the login page; signed-in users without the permission get a polite 403."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not request.user.has_perm(perm):
                return no_access(request)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
