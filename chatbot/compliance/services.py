"""What admins change about personal data and residency, each change audited: the regions
collections, groups and API keys allow, and the PII patterns added to the recognizers."""

from __future__ import annotations

import re

from django.contrib.auth.models import Group
from django.db import transaction

from chatbot.models import ApiKey, Collection, GroupPolicy, PiiPattern
from chatbot.telemetry.audit import audit_record

_REGION = re.compile(r"^[a-z0-9][a-z0-9_-]{0,49}$")
_ENTITY = re.compile(r"^[A-Z][A-Z0-9_]{1,39}$")


class ComplianceError(ValueError):
    """A change refused, with the reason in words for the admin."""


def regions_parse(text: str) -> list[str]:
    """ "eu, eu-west" → ["eu", "eu-west"]: catalogue regions, lower case; blank → [] (any)."""
    regions = list(dict.fromkeys(r.strip().lower() for r in re.split(r"[,\s]+", text) if r.strip()))
    bad = [r for r in regions if not _REGION.match(r)]
    if bad:
        raise ComplianceError(
            f"“{bad[0]}” is not a region name: use letters, digits and dashes, as the catalogue's "
            "Region field does (e.g. eu, us-east)."
        )
    return regions


def collection_set_regions(*, collection: Collection, regions: list[str]) -> None:
    collection.allowed_regions = regions
    collection.save(update_fields=["allowed_regions", "updated_at"])
    audit_record("collection.regions", target=collection, details={"regions": regions})


def group_set_regions(*, group: Group, regions: list[str]) -> GroupPolicy:
    policy, _ = GroupPolicy.objects.update_or_create(
        group=group, defaults={"allowed_regions": regions}
    )
    audit_record("group.regions", target=group, details={"regions": regions})
    return policy


def key_set_regions(*, key: ApiKey, regions: list[str]) -> None:
    key.allowed_regions = regions
    key.save(update_fields=["allowed_regions"])
    audit_record("api_key.regions", target=key, details={"regions": regions})


@transaction.atomic
def pattern_save(*, entity: str, regex: str, context: list[str]) -> PiiPattern:
    """Add (or replace) the pattern for `entity`; every worker uses it from its next turn."""
    entity = entity.strip().upper()
    if not _ENTITY.match(entity):
        raise ComplianceError(
            "The type must be capital letters, digits and underscores, such as EMPLOYEE_ID."
        )
    try:
        re.compile(regex)
    except re.error as exc:
        raise ComplianceError(f"The regular expression does not compile: {exc}.") from None
    if re.fullmatch(regex, ""):
        raise ComplianceError("The regular expression matches empty text; it would match anywhere.")
    pattern, _ = PiiPattern.objects.update_or_create(
        entity=entity, defaults={"regex": regex, "context": context, "enabled": True}
    )
    audit_record("pii_pattern.save", target=pattern, details={"entity": entity, "context": context})
    return pattern


def pattern_delete(*, pattern: PiiPattern) -> None:
    audit_record("pii_pattern.delete", target=pattern, details={"entity": pattern.entity})
    pattern.delete()
