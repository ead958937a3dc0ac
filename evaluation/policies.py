"""The admins' policies for the policy judge: named rules in plain language, kept in the database.
Every change is audited; the judge reads the enabled ones each time it runs, so an edit applies
from the next answer judged (scores already made keep the policy names they were judged on)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from chatbot.models import JudgePolicy
from chatbot.telemetry.audit import audit_changes, audit_record

NAME_LIMIT = 120
RULE_LIMIT = 2000
# Every enabled policy goes into each judge call: past this many, split the work into judges.
POLICIES_MAX = 30


class InvalidPolicy(ValueError):
    """A policy that cannot be saved; the message is shown to the admin as it is."""


def policies_for_judging() -> tuple[tuple[str, str], ...]:
    """The enabled policies as (name, rule), in name order: what the policy judge is given."""
    rows = JudgePolicy.objects.filter(enabled=True).order_by("name").values_list("name", "rule")
    return tuple((name, rule) for name, rule in rows)


def _clean(name: object, rule: object) -> tuple[str, str]:
    name_text = " ".join(str(name or "").split())
    rule_text = str(rule or "").strip()
    if not name_text:
        raise InvalidPolicy("Give the policy a short name, such as “No refund promises”.")
    if len(name_text) > NAME_LIMIT:
        raise InvalidPolicy(f"Keep the name under {NAME_LIMIT} characters.")
    if not rule_text:
        raise InvalidPolicy("Write the rule itself, in plain language.")
    if len(rule_text) > RULE_LIMIT:
        raise InvalidPolicy(
            f"Keep the rule under {RULE_LIMIT} characters; split a long one into several."
        )
    return name_text, rule_text


@transaction.atomic
def policy_save(
    *, policy: JudgePolicy | None = None, name: object, rule: object, enabled: bool = True
) -> JudgePolicy:
    """Create a policy (`policy` None) or change one. Names are unique, whatever their case."""
    name_text, rule_text = _clean(name, rule)
    clash = JudgePolicy.objects.filter(name__iexact=name_text)
    if policy is not None:
        clash = clash.exclude(pk=policy.pk)
    if clash.exists():
        raise InvalidPolicy(f"There is already a policy named “{name_text}”.")
    if (
        enabled
        and (policy is None or not policy.enabled)
        and JudgePolicy.objects.filter(enabled=True).count() >= POLICIES_MAX
    ):
        raise InvalidPolicy(
            f"At most {POLICIES_MAX} policies can be on at once: the judge reads them all for "
            "every answer. Turn one off or merge two."
        )
    before: dict[str, Any] = {}
    if policy is None:
        policy = JudgePolicy(name=name_text, rule=rule_text, enabled=enabled)
    else:
        policy = JudgePolicy.objects.select_for_update().get(pk=policy.pk)
        before = {"name": policy.name, "rule": policy.rule, "enabled": policy.enabled}
        policy.name, policy.rule, policy.enabled = name_text, rule_text, enabled
    policy.save()
    after = {"name": policy.name, "rule": policy.rule, "enabled": policy.enabled}
    audit_record(
        "judge_policy.save",
        target=policy,
        details={"created": not before, "changed": audit_changes(before, after)},
    )
    return policy


@transaction.atomic
def policy_delete(*, policy: JudgePolicy) -> None:
    """Delete a policy. Scores already made keep its name in their details."""
    audit_record(
        "judge_policy.delete",
        target=policy,
        details={"name": policy.name, "rule": policy.rule, "enabled": policy.enabled},
    )
    policy.delete()
