"""Admin console: the automatic judges. Editing a judge saves a new version (scores keep naming
the version that made them); switching one on or off; judging recent turns again. Beside each
judge: its agreement with the human reviews and whether its model can grade. The policies the
policy judge checks answers against are written here too."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from chatbot.accounts import roles
from chatbot.accounts.access import permission_required
from chatbot.jobs import jobs_watch
from chatbot.models import Judge, JudgePolicy, ModelEndpoint
from chatbot.models.judges import TRUST_MIN_KAPPA
from evaluation import policies, selectors, services
from evaluation.judge_models import JudgeModel, judge_model, judges_models
from evaluation.review.agreement import TRUST_MIN_PAIRS, trust_note

PAGE_SIZE = 25
REJUDGE_UNAVAILABLE = (
    "The background queue is unavailable right now, so the re-judge did not start; "
    "ask again when it is back."
)
STATS_DAYS = 30


class JudgeForm(forms.Form):
    threshold = forms.FloatField(
        min_value=0.0,
        max_value=1.0,
        help_text="Scores run 0-1 (1 = good); a score under the threshold flags the answer.",
    )
    enabled = forms.BooleanField(required=False, label="Runs on new answers")
    options = forms.JSONField(
        required=False,
        help_text='Kind-specific settings as JSON, e.g. {"max_chars": 4000} for format.',
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    endpoint = forms.ModelChoiceField(
        queryset=ModelEndpoint.objects.filter(enabled=True).order_by("name"),
        required=False,
        label="Judge model",
        empty_label="The default model at the time the judge runs",
    )
    prompt_template = forms.CharField(
        required=False,
        label="Prompt template",
        widget=forms.Textarea(attrs={"rows": 10}),
        help_text="Uses {question}, {answer} and {context}; double other braces. It must ask "
        'for a final line "Score: N" with N from 1 to 5. Blank uses the built-in prompt.',
    )

    def __init__(self, *args: Any, judge: Judge, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not judge.is_llm:
            # Only LLM judges call a model with a prompt.
            del self.fields["endpoint"]
            del self.fields["prompt_template"]

    def clean_options(self) -> dict[str, Any]:
        value = self.cleaned_data.get("options") or {}
        if not isinstance(value, dict):
            raise forms.ValidationError('Options must be a JSON object, such as {"json": true}.')
        return value


@dataclass(frozen=True)
class JudgeRow:
    judge: Judge
    model: JudgeModel | None


def _judge(pk: int) -> Judge:
    try:
        return Judge.objects.select_related("endpoint").get(pk=pk)
    except Judge.DoesNotExist:
        raise Http404("No such judge version.") from None


def _list(request: HttpRequest, *, status: int = 200) -> HttpResponse:
    since = timezone.now() - timedelta(days=STATS_DAYS)
    page = Paginator(selectors.judges_with_stats(since=since), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    models = judges_models(page.object_list)
    rows = [JudgeRow(j, models.get(j.pk)) for j in page.object_list]
    context = {
        "page": page,
        "rows": rows,
        "stats_days": STATS_DAYS,
        "rejudge_max_days": services.REJUDGE_MAX_DAYS,
        "rejudge_days": request.POST.get("days", "7"),
        "trust_min_kappa": TRUST_MIN_KAPPA,
        "trust_min_pairs": TRUST_MIN_PAIRS,
        "policies_on": JudgePolicy.objects.filter(enabled=True).count(),
    }
    return render(request, "console/judges.html", context, status=status)


@permission_required(roles.MANAGE_SETTINGS)
def judges_list(request: HttpRequest) -> HttpResponse:
    return _list(request)


@permission_required(roles.MANAGE_SETTINGS)
def judge_edit(request: HttpRequest, pk: int) -> HttpResponse:
    judge = _judge(pk)
    initial = {
        "threshold": judge.threshold,
        "enabled": judge.enabled,
        "options": judge.options,
        "endpoint": judge.endpoint,
        "prompt_template": judge.prompt_template,
    }
    form = JudgeForm(request.POST or None, initial=initial, judge=judge)
    if request.method == "POST" and form.is_valid():
        changes = dict(form.cleaned_data)
        try:
            new = services.judge_new_version(judge=judge, **changes)
        except services.InvalidJudge as exc:
            form.add_error(None, str(exc))
        else:
            state = "it runs on new answers" if new.enabled else "it is off"
            messages.success(request, f"Saved {new.name} as version {new.version}; {state}.")
            return redirect("console:judges")
    status = 400 if request.method == "POST" else 200
    context = {
        "form": form,
        "judge": judge,
        "model_state": judge_model(judge),
        "trust": trust_note(judge.trust_state, judge.trust_kappa, judge.trust_pairs),
    }
    return render(request, "console/judge_form.html", context, status=status)


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def judge_toggle(request: HttpRequest, pk: int) -> HttpResponse:
    judge = _judge(pk)
    services.judge_set_enabled(judge=judge, enabled=not judge.enabled)
    if judge.enabled:
        messages.success(request, f"{judge} now runs on new answers; other versions are off.")
    else:
        messages.success(request, f"{judge} is off.")
    return redirect("console:judges")


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def judges_rejudge(request: HttpRequest) -> HttpResponse:
    try:
        with jobs_watch() as submitted:
            days = services.turns_rejudge_queue(days=request.POST.get("days", ""))
    except services.InvalidJudge as exc:
        messages.error(request, str(exc))
        return _list(request, status=400)
    if not submitted.all_sent:  # nothing is saved for a re-judge: the person asks again later
        messages.error(request, REJUDGE_UNAVAILABLE)
        return redirect("console:judges")
    messages.success(
        request,
        f"Judging again the answers of the last {days} days that the current judge versions "
        "have not scored; new scores appear as the workers get through them.",
    )
    return redirect("console:judges")


# --- policies for the policy judge ---------------------------------------------------------------


class PolicyForm(forms.Form):
    name = forms.CharField(
        max_length=policies.NAME_LIMIT,
        help_text="Short, as reviewers will see it on a flagged answer.",
    )
    rule = forms.CharField(
        max_length=policies.RULE_LIMIT,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="In plain language, e.g. “Never promise a refund; refunds are decided by the "
        "billing team.”",
    )
    enabled = forms.BooleanField(required=False, initial=True, label="Checked on new answers")


def _policy(pk: int) -> JudgePolicy:
    try:
        return JudgePolicy.objects.get(pk=pk)
    except JudgePolicy.DoesNotExist:
        raise Http404("No such policy.") from None


def _policies_page(
    request: HttpRequest, form: PolicyForm, *, editing: JudgePolicy | None = None, status: int = 200
) -> HttpResponse:
    judge = (
        Judge.objects.filter(kind=Judge.Kind.POLICY_LLM).order_by("-enabled", "-version").first()
    )
    context = {
        "policies": JudgePolicy.objects.order_by("name"),
        "form": form,
        "editing": editing,
        "judge": judge,
        "model_state": judge_model(judge) if judge is not None else None,
        "policies_max": policies.POLICIES_MAX,
    }
    return render(request, "console/judge_policies.html", context, status=status)


def _policy_save(request: HttpRequest, editing: JudgePolicy | None) -> HttpResponse:
    form = PolicyForm(request.POST)
    if form.is_valid():
        try:
            saved = policies.policy_save(policy=editing, **form.cleaned_data)
        except policies.InvalidPolicy as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Saved the policy “{saved.name}”.")
            return redirect("console:judge_policies")
    return _policies_page(request, form, editing=editing, status=400)


@permission_required(roles.MANAGE_SETTINGS)
def judge_policies(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return _policy_save(request, None)
    return _policies_page(request, PolicyForm())


@permission_required(roles.MANAGE_SETTINGS)
def judge_policy_edit(request: HttpRequest, pk: int) -> HttpResponse:
    policy = _policy(pk)
    if request.method == "POST":
        return _policy_save(request, policy)
    form = PolicyForm(initial={"name": policy.name, "rule": policy.rule, "enabled": policy.enabled})
    return _policies_page(request, form, editing=policy)


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def judge_policy_delete(request: HttpRequest, pk: int) -> HttpResponse:
    policy = _policy(pk)
    policies.policy_delete(policy=policy)
    messages.success(request, f"Deleted the policy “{policy.name}”.")
    return redirect("console:judge_policies")
