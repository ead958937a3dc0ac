"""The "API keys" page under the user menu: a person's own keys (make one, the secret shown once;
revoke one). Everyone who may chat may make keys, since every key is for the chat API; `nora`
(no role) cannot use the API and gets the no-access page. Admins see and revoke anyone's keys on
the People page."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from chatbot.accounts import roles
from chatbot.accounts.access import permission_required, signed_in_user
from chatbot.compliance.services import ComplianceError, key_set_regions, regions_parse
from chatbot.console import people_services
from chatbot.models import ApiKey

MAX_EXPIRY_DAYS = 3650


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="To recognise the key by, e.g. “CI bot”.")
    scopes = forms.MultipleChoiceField(
        choices=ApiKey.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[ApiKey.Scope.CHAT],
        help_text="Read only lets the key make GET requests (read conversations, list models).",
    )
    expires_days = forms.IntegerField(
        label="Expires after (days)",
        required=False,
        min_value=1,
        max_value=MAX_EXPIRY_DAYS,
        initial=90,
        help_text="Leave empty for a key that never expires.",
    )
    regions = forms.CharField(
        label="Regions",
        required=False,
        max_length=200,
        help_text="What is asked with the key goes only to models in these regions (comma "
        "separated, e.g. eu). Leave empty for any region.",
    )

    def clean_regions(self) -> list[str]:
        try:
            return regions_parse(self.cleaned_data.get("regions") or "")
        except ComplianceError as exc:
            raise forms.ValidationError(str(exc)) from None

    def expires_at(self) -> datetime | None:
        days = self.cleaned_data.get("expires_days")
        return timezone.now() + timedelta(days=days) if days else None


@permission_required(roles.USE_CHAT)
def keys_page(request: HttpRequest) -> HttpResponse:
    user = signed_in_user(request)
    form = ApiKeyForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        created = people_services.key_create(
            user=user,
            name=form.cleaned_data["name"],
            scopes=form.cleaned_data["scopes"],
            expires_at=form.expires_at(),
        )
        if form.cleaned_data["regions"]:
            key_set_regions(key=created.key, regions=form.cleaned_data["regions"])
        form = ApiKeyForm()
    keys = ApiKey.objects.filter(user=user)
    return render(
        request,
        "accounts/keys.html",
        {"form": form, "keys": keys, "created": created},
        status=400 if form.errors else 200,
    )


@require_POST
@permission_required(roles.USE_CHAT)
def key_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """Revoke one of your own keys (another's is not found: no hint that it exists)."""
    key = ApiKey.objects.filter(pk=pk, user=signed_in_user(request)).first()
    if key is None:
        raise Http404("No such key.")
    if people_services.key_revoke(key=key):
        messages.success(request, f"The key “{key.name}” ({key.prefix}…) is revoked.")
    return redirect("api_keys")
