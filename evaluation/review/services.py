"""Writes for the review queue: taking items, skipping, releasing and submitting reviews, and the
admins' flag rules.

Claiming is safe under concurrency: candidate items are locked with `SELECT ... FOR UPDATE SKIP
LOCKED`, so two reviewers asking at once are handed different items, and the holds are counted
again after the lock is taken (a fresh snapshot under READ COMMITTED), so an item whose last
free slot another reviewer committed a moment ago is passed over rather than handed out twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from chatbot.jobs import job_submit_on_commit
from chatbot.models import FlagRule, Judge, Review, ReviewAssignment, ReviewItem
from chatbot.telemetry.audit import audit_changes, audit_record
from evaluation.review import selectors

Status = ReviewAssignment.Status
CANDIDATES_TRIED = 20
CORRECTED_ANSWER_LIMIT = 20_000
COMMENT_LIMIT = 4000


class InvalidReview(ValueError):
    """A review action that cannot be done; the message is shown to the reviewer as it is."""


def hold_period() -> timedelta:
    return timedelta(minutes=settings.REVIEW_HOLD_MINUTES)


def _holds(item_id: int, *, exclude: int | None = None) -> int:
    """Submitted reviews plus unexpired holds: the slots of an item already taken."""
    queryset = ReviewAssignment.objects.filter(item_id=item_id).filter(selectors.holding_q())
    if exclude is not None:
        queryset = queryset.exclude(pk=exclude)
    return queryset.count()


def _claim(reviewer: User, item: ReviewItem) -> ReviewAssignment:
    now = timezone.now()
    return ReviewAssignment.objects.create(
        item=item, reviewer=reviewer, status=Status.ACTIVE, expires_at=now + hold_period()
    )


def review_next(*, reviewer: User) -> ReviewAssignment | None:
    """The reviewer's current item, or the highest-priority open item that still needs a review
    and that they have not held before. None when the queue has nothing for them."""
    current = selectors.assignment_current(reviewer=reviewer)
    if current is not None:
        return current
    passed_over: list[int] = []
    with transaction.atomic():
        for _ in range(CANDIDATES_TRIED):
            item = (
                selectors.items_claimable(reviewer=reviewer)
                .exclude(pk__in=passed_over)
                .select_for_update(skip_locked=True, of=("self",))
                .first()
            )
            if item is None:
                return None
            if _holds(item.pk) < item.reviews_needed:
                return _claim(reviewer, item)
            passed_over.append(item.pk)
    return None


def review_claim(*, reviewer: User, item: ReviewItem) -> ReviewAssignment:
    """Take one chosen item from the queue (the list's "Review this" button)."""
    current = selectors.assignment_current(reviewer=reviewer)
    if current is not None:
        if current.item_id == item.pk:
            return current
        raise InvalidReview(
            "You are already reviewing another item. Submit, skip or release it first."
        )
    with transaction.atomic():
        locked = ReviewItem.objects.select_for_update().filter(pk=item.pk).first()
        if locked is None or locked.status != ReviewItem.Status.OPEN:
            raise InvalidReview("This item has already been reviewed.")
        if ReviewAssignment.objects.filter(item=locked, reviewer=reviewer).exists():
            raise InvalidReview("You have already reviewed, skipped or released this item.")
        if _holds(locked.pk) >= locked.reviews_needed:
            raise InvalidReview("Another reviewer is working on this item. Take the next one.")
        return _claim(reviewer, locked)


def _finish(assignment: ReviewAssignment, status: str) -> ReviewAssignment:
    if assignment.status != Status.ACTIVE:
        raise InvalidReview(
            f"This item is no longer yours to work on ({assignment.get_status_display().lower()})."
        )
    assignment.status = status
    assignment.finished_at = timezone.now()
    assignment.save(update_fields=["status", "finished_at"])
    return assignment


def review_skip(*, assignment: ReviewAssignment) -> ReviewAssignment:
    """Not for this reviewer: the item goes back to the queue and is never offered to them again."""
    return _finish(assignment, Status.SKIPPED)


def review_release(*, assignment: ReviewAssignment) -> ReviewAssignment:
    """Stop working on the item without judging it, so another reviewer can take it at once."""
    return _finish(assignment, Status.RELEASED)


def _grade(name: str, value: object) -> int:
    try:
        grade = int(str(value).strip())
    except (TypeError, ValueError):
        grade = 0
    if not 1 <= grade <= 5:
        shown = "nothing" if value in (None, "") else f"“{value}”"
        raise InvalidReview(f"Grade {name} from 1 to 5 (got {shown}).")
    return grade


def _causes(causes: Iterable[object]) -> list[str]:
    known = set(Review.Cause.values)
    chosen = [str(c) for c in causes]
    unknown = [c for c in chosen if c not in known]
    if unknown:
        raise InvalidReview(
            f"Unknown cause {', '.join(unknown)}; choose from {', '.join(Review.Cause.values)}."
        )
    return [c for c in Review.Cause.values if c in chosen]


def _text(value: object, *, name: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidReview(f"The {name} must be text.")
    text = value.strip()
    if len(text) > limit:
        raise InvalidReview(f"The {name} is too long ({len(text):,} characters; limit {limit:,}).")
    return text


def review_submit(
    *,
    assignment: ReviewAssignment,
    grades: Mapping[str, object],
    corrected_answer: object = "",
    causes: Iterable[object] = (),
    comment: object = "",
    approved: bool = False,
) -> Review:
    """Save the reviewer's grades (1-5 on each rubric item), correction and causes. The item is
    done once it has all the reviews it needs."""
    fields: dict[str, Any] = {name: _grade(name, grades.get(name)) for name in Review.RUBRIC}
    fields["causes"] = _causes(causes)
    fields["corrected_answer"] = _text(
        corrected_answer, name="corrected answer", limit=CORRECTED_ANSWER_LIMIT
    )
    fields["comment"] = _text(comment, name="comment", limit=COMMENT_LIMIT)
    with transaction.atomic():
        item = (
            ReviewItem.objects.select_for_update().select_related("turn").get(pk=assignment.item_id)
        )
        held = ReviewAssignment.objects.select_for_update().get(pk=assignment.pk)
        if held.status != Status.ACTIVE:
            raise InvalidReview(
                f"This item is no longer yours to review ({held.get_status_display().lower()})."
            )
        # A hold that ran out is still honoured while nobody else has taken its place.
        if held.expires_at <= timezone.now() and _holds(item.pk, exclude=held.pk) >= (
            item.reviews_needed
        ):
            raise InvalidReview(
                "Your hold on this item expired and another reviewer has taken it. "
                "Your review was not saved; take the next item."
            )
        if item.status == ReviewItem.Status.DONE:
            raise InvalidReview("This item already has all the reviews it needs.")
        review = Review.objects.create(
            item=item, turn=item.turn, reviewer=held.reviewer, approved=bool(approved), **fields
        )
        held.status = Status.SUBMITTED
        held.finished_at = timezone.now()
        held.save(update_fields=["status", "finished_at"])
        submitted = item.assignments.filter(status=Status.SUBMITTED).count()
        if submitted >= item.reviews_needed:
            item.status = ReviewItem.Status.DONE
            item.done_at = timezone.now()
            item.save(update_fields=["status", "done_at"])
        # A new human grade may move a judge's agreement across the line that lets it flag.
        job_submit_on_commit("evaluation.judge_trust_refresh")
    assignment.refresh_from_db()
    return review


# --- Flag rules (admins) --------------------------------------------------------------------------

RULE_FIELDS = ("name", "kind", "priority", "judge_name", "sample_rate", "double_review", "enabled")


class InvalidRule(ValueError):
    """A flag rule that cannot be saved; the message is shown to the admin as it is."""


def flag_rule_validate(data: Mapping[str, Any]) -> None:
    if not 0 <= float(data.get("sample_rate") or 0) <= 1:
        raise InvalidRule("The sample rate is a share between 0 and 1 (0.02 samples 2%).")
    kind = data.get("kind")
    if kind == FlagRule.Kind.RANDOM_SAMPLE and not float(data.get("sample_rate") or 0):
        raise InvalidRule("A random sample needs a sample rate above 0, such as 0.02.")
    judge_name = data.get("judge_name") or ""
    if judge_name and kind != FlagRule.Kind.JUDGE_BELOW:
        raise InvalidRule("Only a “judge under threshold” rule names a judge.")
    if judge_name and not Judge.objects.filter(name=judge_name).exists():
        names = ", ".join(sorted(set(Judge.objects.values_list("name", flat=True)))) or "none yet"
        raise InvalidRule(f"There is no judge called “{judge_name}” (judges: {names}).")


def flag_rule_save(*, rule: FlagRule | None, data: Mapping[str, Any]) -> FlagRule:
    unknown = set(data) - set(RULE_FIELDS)
    if unknown:
        raise InvalidRule(f"These rule fields cannot be set: {', '.join(sorted(unknown))}.")
    flag_rule_validate(data)
    target = rule if rule is not None else FlagRule()
    before = {name: getattr(target, name) for name in data} if target.pk else {}
    for name, value in data.items():
        setattr(target, name, value)
    if target.kind != FlagRule.Kind.RANDOM_SAMPLE:
        target.sample_rate = 0.0
    with transaction.atomic():
        target.save()
        after = {name: getattr(target, name) for name in data}
        audit_record(
            "flag_rule.save",
            target=target,
            details={"created": rule is None, "changed": audit_changes(before, after)},
        )
    return target


@transaction.atomic
def flag_rule_set_enabled(*, rule: FlagRule, enabled: bool) -> FlagRule:
    rule.enabled = enabled
    rule.save(update_fields=["enabled", "updated_at"])
    audit_record("flag_rule.enable", target=rule, details={"enabled": enabled})
    return rule
