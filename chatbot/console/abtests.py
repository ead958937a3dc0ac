"""Admin console: online A/B tests. A list of tests; a form to define a draft and its variants
(an endpoint, a prompt version, retrieval overrides, a weight); a test's page with every
variant's numbers against the control, and Start, Stop and Promote.

The lifecycle and the statistics are `evaluation.abtests`; promotion is here because what it
changes (the default model, the published prompt, the assistant settings) is the console's, with
its services (`chatbot.console.services`: regression reruns on a new default or prompt).

A test that is the online step of a fine-tuned model's gated promotion (`Promotion.abtest`) is
promoted from that promotion's page only (`evaluation.finetune.promotion.promotion_promote`, which
checks the online numbers, records the promotion with its rollback, and then calls
`abtest_promote` here); this page shows its numbers and links there."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count, F, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from chatbot.accounts import roles
from chatbot.accounts.access import permission_required
from chatbot.agent.grounding import assistant_settings
from chatbot.console import services
from chatbot.console.tools import PrettyJSONField
from chatbot.models import (
    ABAssignment,
    ABTest,
    ABVariant,
    FineTuneJob,
    ModelEndpoint,
    Promotion,
    PromptVersion,
    Turn,
)
from evaluation.abtests.services import (
    ABTestError,
    VariantSpec,
    abtest_mark_promoted,
    abtest_results,
    abtest_save,
    abtest_start,
    abtest_stop,
)

VARIANT_ROWS = 4  # rows on the form; blank ones are ignored


# --- promotion -------------------------------------------------------------------------------


def gated_promotion(test: ABTest) -> tuple[Promotion, str] | None:
    """The fine-tuning promotion whose online step `test` is, with its job page's address."""
    promotion = Promotion.objects.select_related("endpoint").filter(abtest=test).first()
    if promotion is None:
        return None
    job = FineTuneJob.objects.filter(endpoint_id=promotion.endpoint_id).only("pk").first()
    url = reverse("review:finetune_job", args=[job.pk]) if job else reverse("review:finetune_jobs")
    return promotion, url


def abtest_promote(*, test: ABTest, variant: ABVariant, user: User) -> bool:
    """Make the variant what production does: its endpoint the default model, its prompt version
    the published one (without a gate: the test was the comparison; the version's note names
    the test), its retrieval overrides saved to the assistant settings. A running test is stopped
    first. Returns False when the variant was already promoted (nothing changes); refuses
    another variant once a winner is recorded."""
    if variant.test_id != test.pk:
        raise ABTestError("That variant belongs to another test.")
    gated = gated_promotion(test)
    # The promotion marks itself promoted before it calls this; until then, its page decides.
    if gated is not None and gated[0].status != Promotion.Status.PROMOTED:
        promotion, url = gated
        raise ABTestError(
            f"“{test.name}” is the online step of the gated promotion of the fine-tuned model "
            f"“{promotion.endpoint.name}”: promote it from its fine-tuning job's page ({url}), "
            "which checks the online numbers, records the promotion and offers the rollback."
        )
    if test.winner_id is not None:
        if test.winner_id == variant.pk:
            return False
        raise ABTestError(f"“{test.name}” already promoted “{test.winner}”.")
    if test.status == ABTest.Status.DRAFT:
        raise ABTestError(f"“{test.name}” has not run: there is nothing to promote.")
    version = variant.prompt_version
    if version is not None and version.status == PromptVersion.Status.RETIRED:
        raise ABTestError(
            f"Prompt v{version.number} was retired since the test started; copy it into a new "
            "draft and publish that instead."
        )
    if variant.endpoint is not None and not variant.endpoint.enabled:
        raise ABTestError(f"Enable the model “{variant.endpoint.name}” before promoting it.")
    with transaction.atomic():
        abtest_stop(test=test)
        if variant.endpoint is not None:
            services.endpoint_set_default(endpoint=variant.endpoint, user=user)
        if version is not None and version.status == PromptVersion.Status.DRAFT:
            note = f"Promoted from the A/B test “{test.name}”. {version.note}".strip()
            PromptVersion.objects.filter(pk=version.pk).update(note=note[:300])
            services.prompt_publish(version=version, user=user, ungated=True)
        if variant.retrieval:
            config = assistant_settings()
            for key, value in variant.retrieval.items():
                setattr(config, key, value)
            config.save()
        abtest_mark_promoted(test=test, variant=variant, user=user)
    return True


# --- forms -----------------------------------------------------------------------------------


class TestForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(
        max_length=2000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="What the test should tell you, for whoever reads its results.",
    )


class VariantForm(forms.Form):
    name = forms.CharField(max_length=80, required=False)
    is_control = forms.BooleanField(required=False, label="Control")
    weight = forms.IntegerField(min_value=0, max_value=100, required=False, label="Weight %")
    endpoint = forms.ModelChoiceField(
        queryset=ModelEndpoint.objects.filter(enabled=True).order_by("name"),
        required=False,
        empty_label="Default model / routing",
    )
    prompt_version = forms.ModelChoiceField(
        queryset=PromptVersion.objects.filter(kind=PromptVersion.Kind.SYSTEM)
        .exclude(status=PromptVersion.Status.RETIRED)
        .order_by("-number"),
        required=False,
        empty_label="Published prompt",
        label="Prompt version",
    )
    retrieval = PrettyJSONField(
        required=False,
        label="Retrieval overrides",
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false", "class": "code"}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["prompt_version"].label_from_instance = lambda v: (  # type: ignore[attr-defined]
            f"v{v.number} ({v.get_status_display().lower()})"
        )


VariantFormSet = forms.formset_factory(VariantForm, extra=0, min_num=VARIANT_ROWS, max_num=8)


def _specs(formset: Any) -> list[VariantSpec]:
    return [
        VariantSpec(
            name=data["name"],
            weight=data.get("weight") or 0,
            is_control=bool(data.get("is_control")),
            endpoint=data.get("endpoint"),
            prompt_version=data.get("prompt_version"),
            retrieval=data.get("retrieval") or {},
        )
        for data in formset.cleaned_data
        if data and (data.get("name") or "").strip()
    ]


def _test(pk: int) -> ABTest:
    try:
        return ABTest.objects.select_related("winner", "created_by", "promoted_by").get(pk=pk)
    except ABTest.DoesNotExist:
        raise Http404("No such A/B test.") from None


# --- pages -----------------------------------------------------------------------------------


@permission_required(roles.MANAGE_SETTINGS)
def abtests_list(request: HttpRequest) -> HttpResponse:
    # Each count its own subquery: joined together, turns x assignments would multiply.
    def count(rows: QuerySet[Any]) -> Coalesce:
        counted = rows.order_by().values("test_id").annotate(n=Count("pk")).values("n")
        return Coalesce(Subquery(counted[:1]), 0)

    tests = ABTest.objects.select_related("created_by", "winner").annotate(
        variant_count=count(ABVariant.objects.filter(test=OuterRef("pk"))),
        people=count(ABAssignment.objects.filter(test=OuterRef("pk"))),
        answered=count(
            Turn.objects.filter(ab_variant__test=OuterRef("pk"), is_replay=False).annotate(
                test_id=F("ab_variant__test_id")
            )
        ),
    )
    return render(request, "console/abtests.html", {"tests": tests})


@permission_required(roles.MANAGE_SETTINGS)
def abtest_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    test = _test(pk) if pk is not None else None
    if test is not None and test.status != ABTest.Status.DRAFT:
        messages.error(request, f"“{test.name}” is {test.status}: only a draft can be edited.")
        return redirect("console:abtest", test.pk)
    initial_rows: list[dict[str, Any]] = [
        {"name": "Control", "is_control": True, "weight": 50},
        {"name": "Challenger", "weight": 50},
    ]
    if test is not None:
        initial_rows = [
            {
                "name": v.name,
                "is_control": v.is_control,
                "weight": v.weight,
                "endpoint": v.endpoint_id,
                "prompt_version": v.prompt_version_id,
                "retrieval": v.retrieval or None,
            }
            for v in test.variants.all()
        ]
    form = TestForm(
        request.POST or None,
        initial={"name": test.name, "description": test.description} if test else None,
    )
    formset = VariantFormSet(request.POST or None, initial=initial_rows, prefix="variants")
    error = ""
    if request.method == "POST" and form.is_valid() and formset.is_valid():
        try:
            test = abtest_save(
                test=test,
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                variants=_specs(formset),
                user=request.user,  # type: ignore[arg-type]
            )
        except ABTestError as exc:
            error = str(exc)
        else:
            messages.success(request, f"Saved the draft “{test.name}”.")
            return redirect("console:abtest", test.pk)
    context = {"test": test, "form": form, "formset": formset, "error": error}
    status = 400 if request.method == "POST" else 200
    return render(request, "console/abtest_form.html", context, status=status)


@permission_required(roles.MANAGE_SETTINGS)
def abtest_page(request: HttpRequest, pk: int) -> HttpResponse:
    test = _test(pk)
    gated = gated_promotion(test)
    context = {
        "test": test,
        "results": abtest_results(test),
        "promotion_url": gated[1] if gated else "",
    }
    if request.headers.get("HX-Request"):
        return render(request, "console/_abtest_results.html", context)
    return render(request, "console/abtest.html", context)


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def abtest_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    test = _test(pk)
    try:
        if action == "start":
            abtest_start(test=test)
            messages.success(request, f"“{test.name}” is running: new turns are assigned.")
        elif action == "stop":
            abtest_stop(test=test)
            messages.success(request, f"Stopped “{test.name}”: everyone gets production again.")
        elif action == "promote":
            variant = test.variants.select_related("endpoint", "prompt_version").filter(
                pk=request.POST.get("variant") or 0
            )
            chosen = variant.first()
            if chosen is None:
                raise ABTestError("Choose one of the test's variants to promote.")
            if abtest_promote(test=test, variant=chosen, user=request.user):  # type: ignore[arg-type]
                messages.success(request, f"Promoted “{chosen.name}”: it is now the default.")
            else:
                messages.info(request, f"“{chosen.name}” was already promoted.")
        else:
            raise Http404("No such action.")
    except (ABTestError, services.PromptError, ValueError) as exc:
        messages.error(request, str(exc))
    return redirect("console:abtest", test.pk)
