"""Alert rules (admins edit; reviewers read) and their recent firings."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from chatbot.accounts import roles
from chatbot.accounts.access import no_access, permission_required
from chatbot.models import AlertFiring, AlertRule
from observability import services
from observability.forms import AlertRuleForm


def _rule(pk: int) -> AlertRule:
    rule = AlertRule.objects.filter(pk=pk).first()
    if rule is None:
        raise Http404("No such alert rule.")
    return rule


@permission_required(roles.VIEW_DASHBOARD)
def index(request: HttpRequest) -> HttpResponse:
    can_manage = request.user.has_perm(roles.MANAGE_SETTINGS)
    form = AlertRuleForm(request.POST or None)
    if request.method == "POST":
        if not can_manage:
            return no_access(request)
        if form.is_valid():
            rule = services.alert_rule_save(rule=None, data=form.cleaned_data)
            messages.success(request, f"Added the alert “{rule.name}”. It is checked every minute.")
            return redirect("dashboard:alerts")
    context = {
        "rules": AlertRule.objects.order_by("name"),
        "firings": AlertFiring.objects.select_related("rule").order_by("-fired_at")[:50],
        "firing": AlertRule.objects.filter(enabled=True, state=AlertRule.State.FIRING),
        "form": form,
        "can_manage": can_manage,
        "tab": "alerts",
    }
    return render(request, "dashboard/alerts.html", context, status=400 if form.errors else 200)


@permission_required(roles.MANAGE_SETTINGS)
def edit(request: HttpRequest, pk: int) -> HttpResponse:
    rule = _rule(pk)
    form = AlertRuleForm(request.POST or None, instance=rule)
    if request.method == "POST" and form.is_valid():
        services.alert_rule_save(rule=rule, data=form.cleaned_data)
        messages.success(request, f"Saved the alert “{rule.name}”.")
        return redirect("dashboard:alerts")
    context = {"rule": rule, "form": form, "tab": "alerts"}
    return render(request, "dashboard/alert_form.html", context, status=400 if form.errors else 200)


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    rule = _rule(pk)
    if action in {"enable", "disable"}:
        services.alert_rule_set_enabled(rule=rule, enabled=action == "enable")
        messages.success(request, f"The alert “{rule.name}” is now {action}d.")
    elif action == "delete":
        services.alert_rule_delete(rule=rule)
        messages.success(request, f"Deleted the alert “{rule.name}” and its history.")
    else:
        raise Http404("Unknown action.")
    return redirect("dashboard:alerts")
