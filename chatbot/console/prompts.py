"""Admin console: prompts as versioned data, two kinds: the system prompt and the answer
instructions (how to answer from the numbered passages). Versions are listed per kind; a draft (a
copy of the published one) is edited, previewed exactly as the default model would be sent it
(beside the published version of the other kind), and published through a gate: an experiment on
a chosen dataset where the draft must not lose to the published version (see
`services.gate_score`). Publishing, like changing the default model, reruns the regression
datasets; their experiments are linked from the version."""

from __future__ import annotations

import dataclasses
from typing import Any

from django import forms
from django.contrib import messages
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from chatbot.accounts import roles
from chatbot.accounts.access import permission_required
from chatbot.agent.grounding import grounded_prompt
from chatbot.agent.prepare import answer_instructions_published, prompt_first
from chatbot.console import services
from chatbot.llm.prompts import chat_messages, render_completion
from chatbot.llm.router import route_choose
from chatbot.llm.types import ModelError
from chatbot.models import Dataset, Experiment, PromptVersion
from chatbot.retrieval.search import SearchHit

SAMPLE_QUESTION = "How do I reset my password?"
SAMPLE_PASSAGES = (
    "Password reset: click “Forgot password” on the sign-in page; the link lasts 30 minutes.\n\n"
    "Accounts lock after five failed attempts; IT unlocks them from the admin portal."
)


HELP = {
    PromptVersion.Kind.SYSTEM: "What the model is told before every question. The answer "
    "instructions and the numbered passages are added after it, as the preview shows.",
    PromptVersion.Kind.ANSWER: "How to answer from the numbered passages: sent after the system "
    "prompt whenever passages are (never with a question answered without the knowledge base).",
}


class DraftForm(forms.Form):
    text = forms.CharField(max_length=8000, widget=forms.Textarea(attrs={"rows": 10}))
    note = forms.CharField(label="Note", max_length=300, required=False)

    def __init__(self, *args: Any, kind: str = PromptVersion.Kind.SYSTEM, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["text"].label = PromptVersion.Kind(kind).label
        self.fields["text"].help_text = HELP[PromptVersion.Kind(kind)]


class NewDraftForm(forms.Form):
    kind = forms.ChoiceField(choices=PromptVersion.Kind.choices)


class PublishForm(forms.Form):
    dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.order_by("name"),
        required=False,
        label="Gate dataset",
        help_text="The draft and the published prompt each run on it with the default model; "
        "the draft is published only if it does not lose.",
    )
    ungated = forms.BooleanField(
        required=False,
        label="Publish without a gate",
        help_text="Only when no dataset fits; recorded on the version.",
    )


class PreviewForm(forms.Form):
    question = forms.CharField(max_length=4000, initial=SAMPLE_QUESTION, label="Sample question")
    passages = forms.CharField(
        max_length=20000,
        required=False,
        initial=SAMPLE_PASSAGES,
        label="Sample passages",
        help_text="Separated by a blank line; each becomes a numbered source.",
        widget=forms.Textarea(attrs={"rows": 5}),
    )


def _version(pk: int) -> PromptVersion:
    try:
        return PromptVersion.objects.select_related(
            "gate_dataset", "gate_experiment", "gate_baseline", "created_by"
        ).get(pk=pk)
    except PromptVersion.DoesNotExist:
        raise Http404("No such prompt version.") from None


def _sample_hit(number: int, text: str) -> SearchHit:
    return SearchHit(
        chunk_id=-number,
        score=1.0,
        dense_rank=number,
        sparse_rank=number,
        similarity=1.0,
        text_rank=None,
        heading="",
        text=text,
        document_id=-number,
        external_id=f"sample-{number}",
        title=f"Sample passage {number}",
        url="",
        collection_id=0,
        collection_name="",
    )


def prompt_preview_render(version: PromptVersion, question: str, passages: str) -> dict[str, Any]:
    """What the default model would be sent for `question` grounded in `passages`, built by the
    same functions a turn uses: one text for a completion model, else the chat messages."""
    texts = [p.strip() for p in passages.replace("\r\n", "\n").split("\n\n") if p.strip()]
    hits = [_sample_hit(n, text) for n, text in enumerate(texts, start=1)]
    if version.kind == PromptVersion.Kind.ANSWER:
        prompt = dataclasses.replace(prompt_first(question), instructions=version.text)
    else:
        instructions = answer_instructions_published()[1]
        prompt = dataclasses.replace(
            prompt_first(question, system_prompt=version.text), instructions=instructions
        )
    prompt = grounded_prompt(prompt, hits)
    try:
        endpoint = route_choose(requested=None).endpoint
    except ModelError as exc:
        return {"error": exc.user_message}
    if endpoint.style == "completion":
        return {
            "endpoint": endpoint,
            "completion": render_completion(endpoint.prompt_template, prompt),
        }
    return {"endpoint": endpoint, "messages": chat_messages(prompt)}


@permission_required(roles.MANAGE_SETTINGS)
def prompts_list(request: HttpRequest) -> HttpResponse:
    kinds = []
    for kind in PromptVersion.Kind:
        services.prompt_versions_ensure(kind)
        versions = PromptVersion.objects.filter(kind=kind).select_related("created_by")
        kinds.append({"kind": kind, "help": HELP[kind], "versions": versions.order_by("-number")})
    return render(request, "console/prompts.html", {"kinds": kinds})


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def prompt_new(request: HttpRequest) -> HttpResponse:
    form = NewDraftForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose which kind of prompt to draft.")
        return redirect("console:prompts")
    draft = services.prompt_draft_create(
        user=request.user,  # type: ignore[arg-type]
        kind=form.cleaned_data["kind"],
    )
    messages.success(
        request, f"Draft v{draft.number} of the {draft.get_kind_display().lower()} made."
    )
    return redirect("console:prompt", draft.pk)


@permission_required(roles.MANAGE_SETTINGS)
def prompt_version(request: HttpRequest, pk: int) -> HttpResponse:
    version = _version(pk)
    gate = services.prompt_gate(version)
    if request.headers.get("HX-Request"):
        return render(request, "console/_prompt_gate.html", {"version": version, "gate": gate})
    form = DraftForm(
        request.POST or None,
        initial={"text": version.text, "note": version.note},
        kind=version.kind,
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.prompt_draft_save(
                version=version, text=form.cleaned_data["text"], note=form.cleaned_data["note"]
            )
        except services.PromptError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Saved draft v{version.number}.")
        return redirect("console:prompt", version.pk)
    preview_form = PreviewForm(request.GET if "question" in request.GET else None)
    question, passages = SAMPLE_QUESTION, SAMPLE_PASSAGES
    if preview_form.is_bound and preview_form.is_valid():
        question = preview_form.cleaned_data["question"]
        passages = preview_form.cleaned_data["passages"]
    context = {
        "version": version,
        "form": form,
        "publish_form": PublishForm(initial={"dataset": version.gate_dataset}),
        "preview_form": preview_form if preview_form.is_bound else PreviewForm(),
        "preview": prompt_preview_render(version, question, passages),
        "gate": gate,
        "reruns": Experiment.objects.filter(Q(prompt_version=version) | Q(answer_version=version))
        .exclude(trigger="")
        .select_related("dataset")[:20],
    }
    status = 400 if request.method == "POST" or preview_form.errors else 200
    return render(request, "console/prompt_version.html", context, status=status)


@require_POST
@permission_required(roles.MANAGE_SETTINGS)
def prompt_publish(request: HttpRequest, pk: int) -> HttpResponse:
    version = _version(pk)
    form = PublishForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a dataset from the list.")
        return redirect("console:prompt", version.pk)
    try:
        gate = services.prompt_publish(
            version=version,
            user=request.user,  # type: ignore[arg-type]
            dataset=form.cleaned_data["dataset"],
            ungated=form.cleaned_data["ungated"],
        )
    except services.PromptError as exc:
        messages.error(request, str(exc))
    else:
        if gate.state == "published":
            messages.success(request, gate.message)
        else:
            messages.info(request, f"{gate.message} Publish again once it has finished.")
    return redirect("console:prompt", version.pk)
