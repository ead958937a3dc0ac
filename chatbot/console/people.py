"""Admin console: People. Everyone with an account, their role and keys; create a person (with a
temporary password shown once: the product sends no email), change a role, deactivate or
reactivate, revoke a key. Every change is audited, and one that changes a person's access reaches
their open chat sockets (`chatbot.console.people_services`)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.models import User
from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from chatbot.accounts import roles
from chatbot.accounts.access import permission_required, signed_in_user
from chatbot.accounts.services import ROLES, PeopleError, role_of
from chatbot.console import people_services
from chatbot.models import ApiKey

NO_ROLE = "none"
ROLE_CHOICES = [
    (roles.AGENT, "Agent: chat and search"),
    (roles.REVIEWER, "Reviewer: also review answers and read the dashboard"),
    (roles.ADMIN, "Admin: everything, this console included"),
    (NO_ROLE, "None: may sign in, sees nothing"),
]


def _role(value: str) -> str | None:
    return None if value == NO_ROLE else value


class PersonForm(forms.Form):
    username = forms.RegexField(
        regex=r"^[\w.@+-]+$",
        max_length=150,
        help_text="Letters, digits and @ . + - _ only.",
    )
    full_name = forms.CharField(max_length=150, required=False, label="Name")
    email = forms.EmailField(required=False)
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=roles.AGENT)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=ROLE_CHOICES)


def _people() -> QuerySet[User]:
    return (
        User.objects.order_by("username")
        .prefetch_related("groups")
        .annotate(keys=Count("api_keys", filter=Q(api_keys__revoked_at=None)))
    )


def _rows(people: QuerySet[User]) -> list[dict[str, object]]:
    return [{"person": p, "role": role_of(p) or NO_ROLE} for p in people]


@permission_required(roles.MANAGE_SETTINGS)
def people_list(request: HttpRequest) -> HttpResponse:
    return render(request, "console/people.html", {"rows": _rows(_people())})


@permission_required(roles.MANAGE_SETTINGS)
def person_new(request: HttpRequest) -> HttpResponse:
    form = PersonForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            new = people_services.person_invite(
                username=data["username"],
                full_name=data["full_name"],
                email=data["email"],
                role=_role(data["role"]),
            )
        except PeopleError as exc:
            form.add_error("username", str(exc))
        else:
            return render(request, "console/person_created.html", {"new": new})
    return render(
        request, "console/person_form.html", {"form": form}, status=400 if form.errors else 200
    )


def _person(pk: int) -> User:
    prefetch = Prefetch("api_keys", queryset=ApiKey.objects.order_by("-created_at", "-id"))
    return get_object_or_404(User.objects.prefetch_related("groups", prefetch), pk=pk)


@permission_required(roles.MANAGE_SETTINGS)
def person_page(request: HttpRequest, pk: int) -> HttpResponse:
    person = _person(pk)
    role = role_of(person) or NO_ROLE
    return render(
        request,
        "console/person.html",
        {
            "person": person,
            "role": role,
            "role_form": RoleForm(initial={"role": role}),
            "keys": person.api_keys.all(),
            "is_me": person.pk == request.user.pk,
        },
    )


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def person_role(request: HttpRequest, pk: int) -> HttpResponse:
    person = _person(pk)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Choose one of the roles: {', '.join((*ROLES, NO_ROLE))}.")
        return redirect("console:person", pk=pk)
    try:
        people_services.person_role_set(
            user=person, role=_role(form.cleaned_data["role"]), by=signed_in_user(request)
        )
    except PeopleError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{person.username}'s role is now {form.cleaned_data['role']}.")
    return redirect("console:person", pk=pk)


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def person_active(request: HttpRequest, pk: int) -> HttpResponse:
    person = _person(pk)
    active = request.POST.get("active") == "1"
    try:
        people_services.person_active_set(user=person, active=active, by=signed_in_user(request))
    except PeopleError as exc:
        messages.error(request, str(exc))
    else:
        state = "active again" if active else "deactivated: their sessions and keys stop working"
        messages.success(request, f"{person.username} is {state}.")
    return redirect("console:person", pk=pk)


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def person_key_revoke(request: HttpRequest, pk: int, key_pk: int) -> HttpResponse:
    key = ApiKey.objects.select_related("user").filter(pk=key_pk, user_id=pk).first()
    if key is None:
        raise Http404("No such key.")
    if people_services.key_revoke(key=key):
        messages.success(request, f"{key.user.username}'s key “{key.name}” is revoked.")
    return redirect("console:person", pk=pk)
