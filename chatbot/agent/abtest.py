"""Online A/B tests on the turn's hot path: which variant a turn is answered with, and what that
variant changes (`chatbot.models.abtests`; the admin's pages and the statistics live in
`chatbot.console.abtests` and `evaluation.abtests`).

Which turns take part: a live turn the product builds itself, i.e. the caller passed no prompt,
no model and no generation settings of its own (the chat, the API's plain routes), and the turn
is not a replay. A caller naming a model (the OpenAI-compatible route with `model`), sending its
own messages or its own temperature has chosen what answers it; a replay re-asks a past turn
under conditions its caller picked. Those turns are answered as before and name no variant, so
they never mix into a comparison.

Assignment is sticky per person, not per turn or conversation: the first turn of a person under
a test hashes (test id, user id) into the variants' weights and stores the result
(`ABAssignment`); later turns read it back, so a weight edited mid-test moves only people who
had not asked yet. The cost on every turn is one query (the running test's variants with the
asker's assignment); nothing is held in process memory, so several web processes and workers
agree at once when a test starts or stops.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from django.db.models import Exists, OuterRef, Subquery

from chatbot.agent.grounding import assistant_settings
from chatbot.agent.prepare import prompt_for_turn
from chatbot.llm.types import Prompt
from chatbot.models import ABAssignment, ABTest, ABVariant, AssistantSettings, Turn
from chatbot.runtime.statements import Statement

# The assistant settings a variant may override; anything else a variant holds is ignored here
# and refused when the test is saved (`retrieval_errors`).
RETRIEVAL_FIELDS = ("retrieval_k", "min_similarity", "min_coverage", "min_answerable", "grounding")
_FRACTIONS = ("min_similarity", "min_coverage", "min_answerable")


def retrieval_errors(overrides: Any) -> list[str]:
    """What is wrong with a variant's retrieval overrides, in words; [] when they are fine. The
    same bounds as the assistant settings form (k 1-20, thresholds 0-1, a known grounding
    mode)."""
    if not isinstance(overrides, dict):
        return ['Retrieval overrides must be a JSON object, e.g. {"retrieval_k": 8}.']
    errors = []
    for key, value in overrides.items():
        if key not in RETRIEVAL_FIELDS:
            errors.append(f"“{key}” cannot be overridden (allowed: {', '.join(RETRIEVAL_FIELDS)}).")
        elif key == "retrieval_k":
            if not isinstance(value, int) or not _number_within(value, 1, 20):
                errors.append("retrieval_k must be a whole number from 1 to 20.")
        elif key == "grounding":
            if value not in AssistantSettings.Grounding.values:
                modes = ", ".join(AssistantSettings.Grounding.values)
                errors.append(f"grounding must be one of {modes}.")
        elif key in _FRACTIONS and not _number_within(value, 0, 1):
            errors.append(f"{key} must be a number from 0 to 1.")
    return errors


def _number_within(value: Any, low: float, high: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high


def settings_with(overrides: dict[str, Any], base: AssistantSettings) -> AssistantSettings:
    """An unsaved copy of `base` with the variant's retrieval fields: the saved row is never
    touched while a test runs (promotion saves them, `chatbot.console.abtests`)."""
    config = copy.copy(base)
    for key in RETRIEVAL_FIELDS:
        if key in overrides:
            setattr(config, key, overrides[key])
    return config


def bucket_of(*, test_id: int, user_id: int, weights: Sequence[int]) -> int:
    """The index of the variant a person falls into: a stable hash of (test, person) spread over
    the weights in order. Deterministic, so the split follows the weights without a counter, and
    a lost assignment row would give the same answer again."""
    total = sum(weights)
    if total <= 0:
        return 0
    digest = hashlib.sha256(f"abtest:{test_id}:user:{user_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") % total
    for index, weight in enumerate(weights):
        if point < weight:
            return index
        point -= weight
    return len(weights) - 1  # unreachable: the points run below the total


@dataclass(frozen=True)
class Applied:
    """The variant a turn is answered with and what it changes; None fields keep production's
    choice (the default endpoint or the routing rules, the published prompt, the saved
    settings)."""

    test_id: int
    test_name: str
    variant_id: int
    variant_name: str
    requested_model: str | None = None
    prompt: Prompt | None = None
    config: AssistantSettings | None = None

    @property
    def attributes(self) -> dict[str, Any]:
        """For the turn's root span: which test and variant explain this answer."""
        return {
            "ab_test": self.test_name,
            "ab_test_id": self.test_id,
            "ab_variant": self.variant_name,
            "ab_variant_id": self.variant_id,
        }


# Most turns meet no test: one small statement, compiled once per process, says so before the
# variant's own (three subqueries, three joins: some 3 ms for Django to build on 2 cores).
_RUNNING = Statement(lambda: ABTest.objects.filter(status=ABTest.Status.RUNNING).values("pk")[:1])


def variant_for_turn(*, turn_id: int) -> Applied | None:
    """The running test's variant for the turn's asker (assigning them on their first turn), or
    None: no test runs, the turn is a replay, or the variant's endpoint was disabled since the
    test started (then the turn is answered as production would be, and counts for no variant).

    Only for turns that take part (see the module's docstring): the caller decides that from its
    own arguments before calling."""
    if not _RUNNING.rows():
        return None
    owner = Turn.objects.filter(pk=turn_id).values("conversation__owner_id")[:1]
    variants = list(
        ABVariant.objects.filter(test__status=ABTest.Status.RUNNING)
        .select_related("test", "endpoint", "prompt_version")
        .annotate(
            owner_id=Subquery(owner),
            replay=Subquery(Turn.objects.filter(pk=turn_id).values("is_replay")[:1]),
            assigned=Exists(
                ABAssignment.objects.filter(
                    test_id=OuterRef("test_id"), user_id=Subquery(owner), variant_id=OuterRef("pk")
                )
            ),
        )
        .order_by("position", "pk")
    )
    if not variants or variants[0].replay or variants[0].owner_id is None:
        return None
    variant = next((v for v in variants if v.assigned), None) or _assign(variants)
    return _applied(variant, turn_id)


def _assign(variants: Sequence[ABVariant]) -> ABVariant:
    """A person's first turn under the test. Two first turns at once (two tabs) both hash to the
    same variant; `get_or_create` then reads back whichever row won the unique constraint."""
    first = variants[0]
    chosen = variants[
        bucket_of(
            test_id=first.test_id,
            user_id=first.owner_id,  # type: ignore[attr-defined]
            weights=[v.weight for v in variants],
        )
    ]
    assignment, _ = ABAssignment.objects.get_or_create(
        test_id=first.test_id,
        user_id=first.owner_id,  # type: ignore[attr-defined]
        defaults={"variant": chosen},
    )
    return next((v for v in variants if v.pk == assignment.variant_id), chosen)


def _applied(variant: ABVariant, turn_id: int) -> Applied | None:
    endpoint = variant.endpoint
    if endpoint is not None and not endpoint.enabled:
        return None
    prompt = None
    if variant.prompt_version is not None:
        built = prompt_for_turn(turn_id, system_prompt=variant.prompt_version.text)
        prompt = replace(built, version_id=variant.prompt_version_id)
    overrides = {k: v for k, v in (variant.retrieval or {}).items() if k in RETRIEVAL_FIELDS}
    return Applied(
        test_id=variant.test_id,
        test_name=variant.test.name,
        variant_id=variant.pk,
        variant_name=variant.name,
        requested_model=endpoint.name if endpoint is not None else None,
        prompt=prompt,
        config=settings_with(overrides, assistant_settings()) if overrides else None,
    )
