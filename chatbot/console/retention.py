"""Admin console: Data & retention. The retention policies (with a preview of what each would
remove now), legal holds, the retention job's last runs and "Run now", the archives and a reader
for them; and, on a person's page, "Export data" and "Erase". Admins only; every change and every
read of personal data is audited (`evaluation.retention`)."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from chatbot.accounts import roles
from chatbot.accounts.access import permission_required, signed_in_user
from chatbot.jobs import job_submit_on_commit, jobs_notify, jobs_watch
from chatbot.models import Conversation, LegalHold, RetentionPolicy, RetentionRun
from chatbot.telemetry.audit import audit_record
from evaluation.retention import services
from evaluation.retention.archive import ArchiveError, archive_records, archives_list
from evaluation.retention.people import ErasureRefused, person_erase, person_export
from evaluation.retention.tasks import retention_run_task

# Records shown by the archive reader at once: a search by turn narrows a long file.
READER_LIMIT = 200


class PolicyForm(forms.ModelForm):
    class Meta:
        model = RetentionPolicy
        fields = ["keep_days", "action"]
        labels = {"keep_days": "Keep for (days)"}
        help_texts = {"keep_days": "Empty: keep forever."}


class HoldForm(forms.Form):
    username = forms.CharField(max_length=150, required=False, label="Person (username)")
    conversation = forms.IntegerField(required=False, min_value=1, label="or conversation id")
    reason = forms.CharField(max_length=500)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        username: str = data.get("username", "").strip()
        conversation: int | None = data.get("conversation")
        if bool(username) == bool(conversation):
            raise ValidationError("Name one person or one conversation.")
        if username:
            data["user"] = User.objects.filter(username=username).first()
            if data["user"] is None:
                raise ValidationError(f"No one is called {username}.")
        else:
            data["conv"] = Conversation.objects.filter(pk=int(conversation or 0)).first()
            if data["conv"] is None:
                raise ValidationError(f"There is no conversation {conversation}.")
        return data


def _page(
    request: HttpRequest, *, hold_form: HoldForm | None = None, status: int = 200
) -> HttpResponse:
    policies = services.policies_ensure()
    rows = [
        {
            "policy": p,
            "form": PolicyForm(instance=p, prefix=p.kind),
            "preview": services.policy_preview(p),
        }
        for p in policies
    ]
    return render(
        request,
        "console/retention.html",
        {
            "rows": rows,
            "hold_form": hold_form or HoldForm(),
            "holds": LegalHold.objects.select_related("user", "conversation", "created_by")[:100],
            "runs": RetentionRun.objects.select_related("requested_by")[:10],
            "archives": archives_list()[:50],
            "min_days": settings.RETENTION_MIN_KEEP_DAYS,
        },
        status=status,
    )


@permission_required(roles.MANAGE_SETTINGS)
def retention_page(request: HttpRequest) -> HttpResponse:
    return _page(request)


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def policy_save(request: HttpRequest, pk: int) -> HttpResponse:
    policy = get_object_or_404(RetentionPolicy, pk=pk)
    form = PolicyForm(request.POST, instance=RetentionPolicy.objects.get(pk=pk), prefix=policy.kind)
    if not form.is_valid():
        messages.error(
            request, "; ".join(str(e) for errors in form.errors.values() for e in errors)
        )
        return redirect("console:retention")
    try:
        services.policy_update(
            policy=policy,
            keep_days=form.cleaned_data["keep_days"],
            action=form.cleaned_data["action"],
            user=signed_in_user(request),
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Saved: {policy}.")
    return redirect("console:retention")


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def hold_add(request: HttpRequest) -> HttpResponse:
    form = HoldForm(request.POST)
    if not form.is_valid():
        return _page(request, hold_form=form, status=400)
    services.hold_set(
        user=form.cleaned_data.get("user"),
        conversation=form.cleaned_data.get("conv"),
        reason=form.cleaned_data["reason"],
        by=signed_in_user(request),
    )
    messages.success(
        request, "Legal hold set: the retention job and erasure leave that data alone."
    )
    return redirect("console:retention")


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def hold_release(request: HttpRequest, pk: int) -> HttpResponse:
    services.hold_release(hold=get_object_or_404(LegalHold, pk=pk), by=signed_in_user(request))
    messages.success(request, "Legal hold released.")
    return redirect("console:retention")


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def retention_run_now(request: HttpRequest) -> HttpResponse:
    with jobs_watch() as submitted:
        run = RetentionRun.objects.create(requested_by=signed_in_user(request))
        job_submit_on_commit(retention_run_task, run.pk)
    jobs_notify(
        request, submitted, f"Retention run {run.pk} queued: its counts appear below when it ends."
    )
    return redirect("console:retention")


@permission_required(roles.MANAGE_SETTINGS)
def archive_read(request: HttpRequest) -> HttpResponse:
    """Read one archive file back, optionally one turn's records; a sensitive read, audited."""
    path = request.GET.get("path", "")
    turn = request.GET.get("turn", "").strip()
    records: list[dict[str, Any]] = []
    error = ""
    if turn and not turn.isdigit():
        error = "A turn id is a number."
    else:
        try:
            for record in archive_records(path=path, turn_id=int(turn) if turn else None):
                records.append(record)
                if len(records) >= READER_LIMIT:
                    break
        except ArchiveError as exc:
            error = str(exc)
        else:
            audit_record(
                "archive.read",
                details={"path": path, "turn": turn or None, "records": len(records)},
            )
    return render(
        request,
        "console/retention_archive.html",
        {"path": path, "turn": turn, "records": records, "error": error, "limit": READER_LIMIT},
        status=400 if error else 200,
    )


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def person_export_download(request: HttpRequest, pk: int) -> HttpResponse:
    person = get_object_or_404(User, pk=pk)
    response = StreamingHttpResponse(
        person_export(user=person, by=signed_in_user(request)), content_type="application/gzip"
    )
    response["Content-Disposition"] = f'attachment; filename="person-{person.pk}.json.gz"'
    # The access decorator is typed for plain responses; a streamed one is served the same way.
    return cast(HttpResponse, response)


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def person_erase_view(request: HttpRequest, pk: int) -> HttpResponse:
    person = get_object_or_404(User, pk=pk)
    try:
        counts = person_erase(
            user=person, confirm=request.POST.get("confirm", ""), by=signed_in_user(request)
        )
    except ErasureRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            f"Erased: {counts['turns']} turn(s) and everything derived; the account is now {person.username}.",
        )
    return redirect("console:person", pk=pk)
