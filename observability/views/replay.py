"""Starting a replay (admins), following its progress, and the replays list."""

from __future__ import annotations

from datetime import timedelta

from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST
from django_htmx.middleware import HtmxDetails

from chatbot.accounts import roles
from chatbot.accounts.access import permission_required
from chatbot.compliance.pii import redactor
from chatbot.jobs import jobs_notify, jobs_watch
from chatbot.models import Replay, Turn
from observability import services
from observability.forms import ReplayForm
from observability.views.trace import turn as turn_page

# After a replay finishes, its page keeps polling this long for the judges' scores.
JUDGES_GRACE = timedelta(minutes=2)


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def start(request: HttpRequest, turn_id: int) -> HttpResponse:
    source = Turn.objects.select_related("conversation").filter(pk=turn_id).first()
    if source is None:
        raise Http404("No such turn.")
    form = ReplayForm(request.POST)
    if form.is_valid():
        try:
            with jobs_watch() as submitted:
                replay = services.replay_create(
                    created_by=request.user,  # type: ignore[arg-type]
                    turn=source,
                    endpoint=form.cleaned_data["endpoint"],
                    system_prompt=form.cleaned_data["system_prompt"],
                    scope=form.cleaned_data["scope"],
                    kb_as_of_original=form.cleaned_data["kb"] == "original",
                )
        except services.InvalidReplay as exc:
            form.add_error(None, str(exc))
        else:
            jobs_notify(request, submitted, "Replay started; the new answers appear as they come.")
            return redirect("dashboard:replay", replay.pk)
    return turn_page(request, turn_id, replay_form=form)


def _polling(replay: Replay, pairs: list[services.Pair]) -> bool:
    if not replay.is_finished:
        return True
    waiting = any(
        p.new is not None and p.new.status == Turn.Status.DONE and not p.new.judge_scores.all()
        for p in pairs
    )
    recent = replay.finished_at is not None and timezone.now() - replay.finished_at < JUDGES_GRACE
    return waiting and recent


@permission_required(roles.VIEW_DASHBOARD)
def detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    replay = (
        Replay.objects.select_related(
            "endpoint", "created_by", "source_turn", "source_conversation__owner", "conversation"
        )
        .filter(pk=pk)
        .first()
    )
    if replay is None:
        raise Http404("No such replay.")
    pairs = services.replay_pairs(replay)
    redact = redactor(request.user)
    for pair in pairs:
        for side in (pair.old, pair.new):
            if side is not None:
                side.shown_question = redact(side.user_text)  # type: ignore[attr-defined]
                side.shown_answer = redact(side.answer)  # type: ignore[attr-defined]
    context = {
        "replay": replay,
        "pairs": pairs,
        "polling": _polling(replay, pairs),
        "tab": "replays",
    }
    template = "dashboard/_replay_body.html" if request.htmx else "dashboard/replay.html"
    return render(request, template, context)


@permission_required(roles.VIEW_DASHBOARD)
def index(request: HttpRequest) -> HttpResponse:
    replays = Replay.objects.select_related("endpoint", "created_by", "source_turn").order_by(
        "-created_at"
    )
    page = Paginator(replays, 50).get_page(request.GET.get("page"))
    return render(request, "dashboard/replays.html", {"page": page, "tab": "replays"})
