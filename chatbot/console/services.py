"""Writes for the admin console: the model catalogue, the agent's tools, the routing rules and
the versioned prompts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from chatbot.agent.prepare import BUILT_IN
from chatbot.models import (
    Collection,
    Dataset,
    Experiment,
    ModelEndpoint,
    PromptVersion,
    RoutingRule,
    ToolSetting,
)
from chatbot.telemetry.audit import audit_changes, audit_record
from evaluation.datasets.regression import regression_reruns_queue
from evaluation.datasets.services import InvalidExperiment, experiment_create
from evaluation.finetune.gate import promotion_gate_refusal


@transaction.atomic
def endpoint_save(
    *, endpoint: ModelEndpoint | None, data: dict[str, Any], user: User | None = None
) -> ModelEndpoint:
    """Create or update a catalogue entry from validated form data. Editing the default model
    reruns the regression datasets against it."""
    target = endpoint or ModelEndpoint()
    before = {f: getattr(target, f) for f in data} if target.pk else None
    for field, value in data.items():
        setattr(target, field, value)
    if not target.enabled:
        target.is_default = False
    target.save()
    after = {f: getattr(target, f) for f in data}
    audit_record(
        "endpoint.save",
        target=target,
        details={"created": before is None, "changed": audit_changes(before or {}, after)},
        actor=user,
    )
    if before is not None and target.is_default and before != {f: data[f] for f in data}:
        regression_reruns_queue(reason=f"default model “{target.name}” edited", user=user)
    return target


@transaction.atomic
def endpoint_set_default(*, endpoint: ModelEndpoint, user: User | None = None) -> None:
    """Exactly one default; a disabled endpoint cannot be it. A new default reruns the
    regression datasets."""
    if not endpoint.enabled:
        raise ValueError("Enable the model before making it the default.")
    if refusal := promotion_gate_refusal(endpoint):
        raise ValueError(refusal)
    ModelEndpoint.objects.select_for_update().filter(is_default=True).exclude(
        pk=endpoint.pk
    ).update(is_default=False)
    changed = ModelEndpoint.objects.filter(pk=endpoint.pk, is_default=False).update(is_default=True)
    if changed:
        audit_record("endpoint.default", target=endpoint, actor=user)
        regression_reruns_queue(reason=f"“{endpoint.name}” became the default model", user=user)


def tool_setting_save(*, setting: ToolSetting, data: dict[str, Any]) -> ToolSetting:
    """Save an admin's changes to a tool; the next turn reads them."""
    before = {f: getattr(setting, f) for f in data}
    for field, value in data.items():
        setattr(setting, field, value)
    with transaction.atomic():
        setting.save()
        audit_record("tool.save", target=setting, details={"changed": audit_changes(before, data)})
    return setting


def routing_rule_save(*, rule: RoutingRule | None, data: dict[str, Any]) -> RoutingRule:
    """Create (at the end of the list) or update a routing rule from validated form data; the
    next step of any turn reads it."""
    target = rule or RoutingRule(order=_routing_next_order())
    before = {f: getattr(target, f) for f in data} if target.pk else {}
    for field, value in data.items():
        setattr(target, field, value)
    with transaction.atomic():
        target.save()
        audit_record(
            "routing_rule.save",
            target=target,
            details={"created": rule is None, "changed": audit_changes(before, data)},
        )
    return target


def _routing_next_order() -> int:
    last = RoutingRule.objects.order_by("-order").values_list("order", flat=True).first()
    return (last or 0) + 1


@transaction.atomic
def routing_rule_move(*, rule: RoutingRule, direction: str) -> bool:
    """Swap `rule` with its neighbour ("up" or "down"); False at either end. The list is locked
    and renumbered 1..n, so two admins moving rules at once cannot tie two orders."""
    rules = list(RoutingRule.objects.select_for_update().order_by("order", "pk"))
    at = next(i for i, r in enumerate(rules) if r.pk == rule.pk)
    to = at - 1 if direction == "up" else at + 1
    if direction not in {"up", "down"} or not 0 <= to < len(rules):
        return False
    rules[at], rules[to] = rules[to], rules[at]
    for number, moved in enumerate(rules, start=1):
        moved.order = number
    RoutingRule.objects.bulk_update(rules, ["order"])
    audit_record("routing_rule.move", target=rule, details={"direction": direction, "to": to + 1})
    return True


@transaction.atomic
def routing_rule_set_enabled(*, rule: RoutingRule, enabled: bool) -> None:
    rule.enabled = enabled
    rule.save(update_fields=["enabled", "updated_at"])
    audit_record("routing_rule.enable", target=rule, details={"enabled": enabled})


@transaction.atomic
def routing_rule_delete(*, rule: RoutingRule) -> None:
    audit_record("routing_rule.delete", target=rule, details={"kind": rule.kind})
    rule.delete()


@transaction.atomic
def collection_set_confidential(*, collection: Collection, confidential: bool) -> None:
    """Mark a collection's passages confidential: sensitivity rules then limit where they go."""
    collection.confidential = confidential
    collection.save(update_fields=["confidential", "updated_at"])
    audit_record(
        "collection.confidential", target=collection, details={"confidential": confidential}
    )


# --- prompts as versioned data ------------------------------------------------------------------


class PromptError(ValueError):
    """A prompt change refused, with the reason in words for the admin."""


def _published_version(kind: str = PromptVersion.Kind.SYSTEM) -> PromptVersion | None:
    return PromptVersion.objects.filter(kind=kind, status=PromptVersion.Status.PUBLISHED).first()


def prompt_versions_ensure(kind: str = PromptVersion.Kind.SYSTEM) -> PromptVersion:
    """The published version of `kind`; version 1 from the built-in text when there is none (the
    migrations make it; a database emptied since gets it back). Idempotent."""
    published = _published_version(kind)
    if published is not None:
        return published
    with transaction.atomic():
        PromptVersion.objects.select_for_update().filter(kind=kind).exists()
        published = _published_version(kind)
        if published is not None:
            return published
        return PromptVersion.objects.create(
            kind=kind,
            number=_next_number(kind),
            text=BUILT_IN[PromptVersion.Kind(kind)],
            note="The built-in text.",
            status=PromptVersion.Status.PUBLISHED,
            published_at=timezone.now(),
            ungated=True,
        )


def _next_number(kind: str) -> int:
    top = PromptVersion.objects.filter(kind=kind).aggregate(n=Max("number"))
    return (top["n"] or 0) + 1


def prompt_draft_create(
    *, user: User | None, kind: str = PromptVersion.Kind.SYSTEM
) -> PromptVersion:
    """A new draft of `kind`, a copy of its published text to edit."""
    published = prompt_versions_ensure(kind)
    with transaction.atomic():
        PromptVersion.objects.select_for_update().filter(kind=published.kind).exists()
        draft = PromptVersion.objects.create(
            kind=published.kind,
            number=_next_number(published.kind),
            text=published.text,
            note=f"From v{published.number}",
            created_by=user,
        )
        audit_record("prompt.draft", target=draft, details={"from": published.number}, actor=user)
        return draft


def prompt_draft_save(*, version: PromptVersion, text: str, note: str) -> PromptVersion:
    """Edit a draft; a gate run on the old words no longer says anything about the new ones."""
    if version.status != PromptVersion.Status.DRAFT:
        raise PromptError(f"v{version.number} is {version.status}: copy it into a new draft.")
    if not text.strip():
        raise PromptError("The prompt cannot be empty.")
    before = {"text": version.text, "note": version.note}
    version.text, version.note = text.strip(), note.strip()
    version.gate_dataset = version.gate_experiment = version.gate_baseline = None
    with transaction.atomic():
        version.save(
            update_fields=["text", "note", "gate_dataset", "gate_experiment", "gate_baseline"]
        )
        after = {"text": version.text, "note": version.note}
        audit_record(
            "prompt.draft", target=version, details={"changed": audit_changes(before, after)}
        )
    return version


def gate_score(summary: dict[str, Any]) -> float | None:
    """The one number a gate compares: the mean over every judge and reference metric of its
    mean score (each 0-1, equal weight); None when the run scored nothing."""
    scores = [
        value
        for group in ("judges", "metrics")
        for value in (summary.get(group) or {}).values()
        if value is not None
    ]
    return sum(scores) / len(scores) if scores else None


@dataclass(frozen=True)
class Gate:
    """Where a draft's gate stands: none, running, failed, lost or passed, said in words."""

    state: str
    message: str
    draft: float | None = None
    current: float | None = None


def prompt_gate(version: PromptVersion) -> Gate:
    draft, baseline = version.gate_experiment, version.gate_baseline
    if version.gate_dataset is None or draft is None or baseline is None:
        return Gate("none", "No gate has run for this draft yet.")
    runs = (draft, baseline)
    failed = [e for e in runs if e.status == Experiment.Status.FAILED]
    if failed:
        return Gate("failed", f"The gate's experiment failed: {failed[0].error or 'no reason'}.")
    if any(e.status != Experiment.Status.DONE for e in runs):
        percent = (draft.percent + baseline.percent) // 2
        return Gate(
            "running", f"The gate is running on “{version.gate_dataset.name}” ({percent}%)."
        )
    ours, theirs = gate_score(draft.summary), gate_score(baseline.summary)
    if ours is None or theirs is None:
        return Gate("failed", "The gate's experiments produced no scores to compare.")
    words = (
        f"On “{version.gate_dataset.name}” the draft scored {ours:.3f} against the published "
        f"version's {theirs:.3f}"
    )
    if ours < theirs:
        return Gate("lost", f"{words}: it loses, so it stays a draft.", ours, theirs)
    return Gate("passed", f"{words}: it does not lose.", ours, theirs)


@dataclass(frozen=True)
class PromptPair:
    """What a run is told: a system prompt and answer instructions, each a version."""

    system: PromptVersion
    answer: PromptVersion

    @classmethod
    def published(cls) -> PromptPair:
        return cls(
            system=prompt_versions_ensure(PromptVersion.Kind.SYSTEM),
            answer=prompt_versions_ensure(PromptVersion.Kind.ANSWER),
        )

    def with_version(self, version: PromptVersion) -> PromptPair:
        """The pair with `version` in its kind's place (a draft beside the other published)."""
        if version.kind == PromptVersion.Kind.ANSWER:
            return PromptPair(system=self.system, answer=version)
        return PromptPair(system=version, answer=self.answer)

    def experiment_fields(self) -> dict[str, Any]:
        return {
            "prompt_template": self.system.text,
            "prompt_version": self.system,
            "answer_template": self.answer.text,
            "answer_version": self.answer,
        }


def _gate_current(version: PromptVersion, dataset: Dataset, published: PromptPair) -> bool:
    baseline, draft = version.gate_baseline, version.gate_experiment
    return (
        version.gate_dataset_id == dataset.pk
        and baseline is not None
        and draft is not None
        and baseline.prompt_version_id == published.system.pk
        and baseline.answer_version_id == published.answer.pk
        and draft.dataset_version == baseline.dataset_version == dataset.version
    )


def _baseline(dataset: Dataset, published: PromptPair, draft: Experiment) -> Experiment | None:
    """A run of the published versions on the same dataset version, model and retrieval settings
    that did not fail: the gate reuses it instead of running it again."""
    candidates = Experiment.objects.filter(
        dataset=dataset,
        dataset_version=dataset.version,
        endpoint_id=draft.endpoint_id,
        prompt_version=published.system,
        answer_version=published.answer,
    ).exclude(status=Experiment.Status.FAILED)
    return next((e for e in candidates if e.retrieval == draft.retrieval), None)


def _experiment_prompts(experiment: Experiment, pair: PromptPair) -> None:
    Experiment.objects.filter(pk=experiment.pk).update(**pair.experiment_fields())


def prompt_gate_start(*, version: PromptVersion, dataset: Dataset, user: User) -> Gate:
    """Run the draft, and the published versions unless a run can be reused, on `dataset` with
    the default model and the saved retrieval settings, in the background (progress on the
    experiment pages and on the version's page). A draft of one kind runs beside the published
    version of the other (a system prompt with the published answer instructions)."""
    published = PromptPair.published()
    tried = published.with_version(version)
    with transaction.atomic():
        try:
            draft = experiment_create(
                dataset=dataset,
                prompt_template=tried.system.text,
                name=f"Prompt gate · {version.get_kind_display()} v{version.number} · "
                f"{dataset.name}",
                user=user,
            )
            baseline = _baseline(dataset, published, draft) or experiment_create(
                dataset=dataset,
                endpoint=draft.endpoint,
                prompt_template=published.system.text,
                name=f"Prompt gate · published system v{published.system.number}, answer "
                f"instructions v{published.answer.number} · {dataset.name}",
                user=user,
            )
        except InvalidExperiment as exc:
            raise PromptError(str(exc)) from None
        # Before the runs start: they are queued when this transaction commits.
        _experiment_prompts(draft, tried)
        if baseline.answer_version_id is None:
            _experiment_prompts(baseline, published)
        version.gate_dataset, version.gate_experiment = dataset, draft
        version.gate_baseline = baseline
        version.save(update_fields=["gate_dataset", "gate_experiment", "gate_baseline"])
    return prompt_gate(version)


def prompt_publish(
    *,
    version: PromptVersion,
    user: User,
    dataset: Dataset | None = None,
    ungated: bool = False,
) -> Gate:
    """Publish the draft when its gate on `dataset` passed (starting the gate when it has not
    run on it yet), or without a gate when the admin ticked it. The previous version is retired
    and the regression datasets rerun with the new one. Refusals raise `PromptError`."""
    # As stored now: the gate's runs moved on since the caller read them.
    version.refresh_from_db()
    for name in ("gate_dataset", "gate_experiment", "gate_baseline"):
        version._state.fields_cache.pop(name, None)
    if version.status != PromptVersion.Status.DRAFT:
        raise PromptError(f"v{version.number} is {version.status}; only a draft can be published.")
    if dataset is None and not ungated:
        raise PromptError(
            "Choose a dataset to gate the draft on, or tick “publish without a gate”."
        )
    gate = Gate("none", "Published without a gate.")
    if dataset is not None:
        published = PromptPair.published()
        if not _gate_current(version, dataset, published):
            return prompt_gate_start(version=version, dataset=dataset, user=user)
        gate = prompt_gate(version)
        if gate.state != "passed":
            if gate.state == "running":
                return gate
            raise PromptError(gate.message)
    with transaction.atomic():
        PromptVersion.objects.select_for_update().filter(kind=version.kind).exists()
        PromptVersion.objects.filter(
            kind=version.kind, status=PromptVersion.Status.PUBLISHED
        ).update(status=PromptVersion.Status.RETIRED)
        version.status, version.published_at = PromptVersion.Status.PUBLISHED, timezone.now()
        version.ungated = dataset is None
        version.save(update_fields=["status", "published_at", "ungated"])
        audit_record(
            "prompt.publish",
            target=version,
            details={
                "gate": gate.state,
                "dataset": dataset.pk if dataset is not None else None,
                "score": gate.draft,
                "published_score": gate.current,
            },
            actor=user,
        )
        kind = version.get_kind_display().lower()
        regression_reruns_queue(reason=f"{kind} v{version.number} published", user=user)
    return Gate(
        "published", f"Published v{version.number}. {gate.message}", gate.draft, gate.current
    )
