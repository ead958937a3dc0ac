"""Personal data and residency: the patterns admins add to the recognizers, and the regions a
group's data may go to (collections and API keys carry their own, on their rows)."""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.contrib.postgres.fields import ArrayField
from django.db import models


def regions_field() -> ArrayField:
    """Catalogue regions (`ModelEndpoint.region`) data may go to; empty: anywhere."""
    return ArrayField(
        models.CharField(max_length=50),
        default=list,
        blank=True,
        help_text="Regions the data may be sent to, e.g. eu. Empty: any region.",
    )


class GroupPolicy(models.Model):
    """What a group's members' data may do: the regions of the models it may be sent to."""

    group = models.OneToOneField(Group, on_delete=models.CASCADE, related_name="policy")
    allowed_regions = regions_field()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["group__name"]

    def __str__(self) -> str:
        return f"{self.group.name}: {', '.join(self.allowed_regions) or 'any region'}"


class PiiPattern(models.Model):
    """A kind of personal data the built-in recognizers do not know (an employee number, a
    customer id), added by an admin: found like theirs, replaced by the same placeholders."""

    entity = models.CharField(
        max_length=40,
        unique=True,
        help_text="The type it is recorded as, in capitals: EMPLOYEE_ID.",
    )
    regex = models.CharField(max_length=500, help_text=r"A regular expression, e.g. EMP-\d{6}.")
    context = ArrayField(
        models.CharField(max_length=40),
        default=list,
        blank=True,
        help_text="Words that make a match more certain nearby (optional), e.g. employee.",
    )
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["entity"]

    def __str__(self) -> str:
        return self.entity
