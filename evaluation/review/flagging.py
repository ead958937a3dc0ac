"""Flag rules: which finished turns reach the human-review queue, with what priority and why.

Flagging only ever adds. A reason, once given, stays on the item so the reviewer sees why it came
in (a thumbs down later turned into a thumbs up still deserves a look), and an item that has been
reviewed stays done: the answer has not changed and a human has already graded it; a new reason
is still written down for the record. Everything here is safe to run any number of times.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from chatbot.models import Escalation, Feedback, FlagRule, JudgeScore, ReviewItem, Turn
from chatbot.models.judges import TRUST_MIN_KAPPA

logger = logging.getLogger(__name__)

DEFAULT_RULES: list[dict[str, Any]] = [
    {"name": "Escalated to a human", "kind": FlagRule.Kind.ESCALATION, "priority": 90},
    {"name": "Thumbs down", "kind": FlagRule.Kind.THUMBS_DOWN, "priority": 80},
    {"name": "A judge failed the answer", "kind": FlagRule.Kind.JUDGE_BELOW, "priority": 60},
    {"name": "No answer", "kind": FlagRule.Kind.NO_ANSWER, "priority": 50},
    {"name": "Calibration sample", "kind": FlagRule.Kind.RANDOM_SAMPLE, "priority": 10,
     "sample_rate": 0.02, "double_review": True},
]  # fmt: skip


def rules_ensure() -> list[FlagRule]:
    """Create the default rules once; an admin's edits (or deletions of other rules) are kept."""
    for definition in DEFAULT_RULES:
        fields = dict(definition)
        name = fields.pop("name")
        FlagRule.objects.get_or_create(name=name, defaults=fields)
    return list(FlagRule.objects.filter(name__in=[d["name"] for d in DEFAULT_RULES]))


def sampled(turn_id: int, rate: float) -> bool:
    """Deterministic per turn, so reruns agree; raising the rate keeps every turn already sampled."""
    digest = hashlib.sha256(f"turn:{turn_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


@dataclass(frozen=True)
class Match:
    rule: FlagRule
    reason: str

    def as_reason(self) -> dict[str, str]:
        return {"rule": self.rule.name, "kind": self.rule.kind, "reason": self.reason}


def _matches(turn: Turn, rules: list[FlagRule]) -> list[Match]:
    kinds = {r.kind for r in rules}
    downs = 0
    if FlagRule.Kind.THUMBS_DOWN in kinds:
        downs = Feedback.objects.filter(turn=turn, rating=Feedback.Rating.DOWN).count()
    escalated = FlagRule.Kind.ESCALATION in kinds and Escalation.objects.filter(turn=turn).exists()
    failing: list[JudgeScore] = []
    ignored: list[JudgeScore] = []
    if FlagRule.Kind.JUDGE_BELOW in kinds:
        failing, ignored = _failing_scores(turn)

    found: list[Match] = []
    for rule in rules:
        if rule.kind == FlagRule.Kind.THUMBS_DOWN and downs:
            found.append(
                Match(rule, "Thumbs down" + (f" from {downs} people" if downs > 1 else ""))
            )
        elif rule.kind == FlagRule.Kind.ESCALATION and escalated:
            found.append(Match(rule, "Someone asked for a human"))
        elif rule.kind == FlagRule.Kind.NO_ANSWER and turn.no_answer:
            found.append(
                Match(rule, "Nothing relevant was found; the assistant said it didn't know")
            )
        elif rule.kind == FlagRule.Kind.RANDOM_SAMPLE and turn.status == Turn.Status.DONE:
            if sampled(turn.pk, rule.sample_rate):
                found.append(Match(rule, f"Random sample ({rule.sample_rate:.0%}) for calibration"))
        elif rule.kind == FlagRule.Kind.JUDGE_BELOW:
            under = [s for s in failing if not rule.judge_name or s.judge.name == rule.judge_name]
            if under:
                words = ", ".join(
                    f"{s.judge} scored {s.score:.2f} (threshold {s.judge.threshold:g})"
                    for s in under
                    if s.score is not None
                )
                skipped = [
                    s for s in ignored if not rule.judge_name or s.judge.name == rule.judge_name
                ]
                if skipped:
                    words += "; not counted, untrustworthy: " + ", ".join(
                        str(s.judge) for s in skipped
                    )
                found.append(Match(rule, f"Judge under threshold: {words}"))
    return found


def _failing_scores(turn: Turn) -> tuple[list[JudgeScore], list[JudgeScore]]:
    """The turn's failing scores that may flag it, and those that may not: a judge the humans
    found untrustworthy (kappa under 0.4, `agreement.judge_trust_refresh`) flags nothing until it
    improves. Each score records why it was not counted, or that it counts again; the stored
    trust comes with the score's judge, so this adds no query per judge."""
    failing = list(
        JudgeScore.objects.filter(turn=turn, status=JudgeScore.Status.DONE, passed=False)
        .select_related("judge")
        .order_by("judge__name", "-judge__version")
    )
    counted: list[JudgeScore] = []
    ignored: list[JudgeScore] = []
    for score in failing:
        judge = score.judge
        note = ""
        if judge.is_untrustworthy:
            ignored.append(score)
            kappa = f"{judge.trust_kappa:.2f}" if judge.trust_kappa is not None else "n/a"
            note = (
                f"Not used to flag: {judge.name} was untrustworthy (κ {kappa} against humans "
                f"on {judge.trust_pairs} reviews, under {TRUST_MIN_KAPPA:g})."
            )
        else:
            counted.append(score)
        if note and score.flag_ignored != note:
            JudgeScore.objects.filter(pk=score.pk).update(flag_ignored=note)
            score.flag_ignored = note
    # Trusted again: the score counts on this run, so its old note no longer holds.
    if any(s.flag_ignored for s in counted):
        JudgeScore.objects.filter(pk__in=[s.pk for s in counted]).update(flag_ignored="")
    return counted, ignored


@transaction.atomic
def turn_flag(*, turn_id: int) -> ReviewItem | None:
    """Evaluate every enabled rule against a finished turn and create or update its review item.

    Returns the item (None when no rule matched and there is none). The item's priority is the
    highest of its matching rules, and two reviews are needed when any of them asks for it.
    """
    # Locking the turn serialises the judges, thumbs and escalations that flag one turn at once.
    turn = Turn.objects.select_for_update().filter(pk=turn_id).first()
    # Replays are experiments on past turns, kept out of production figures and the queue.
    if turn is None or not turn.is_finished or turn.is_replay:
        return None
    rules = list(FlagRule.objects.filter(enabled=True))
    matches = _matches(turn, rules)
    item = ReviewItem.objects.filter(turn=turn).first()
    if not matches:
        return item

    top = max(matches, key=lambda m: m.rule.priority)
    needed = 2 if any(m.rule.double_review for m in matches) else 1
    if item is None:
        return ReviewItem.objects.create(
            turn=turn,
            priority=top.rule.priority,
            rule=top.rule,
            reasons=[m.as_reason() for m in matches],
            reviews_needed=needed,
        )

    reasons = [dict(r) for r in item.reasons if isinstance(r, dict)]
    by_rule = {r.get("rule"): r for r in reasons}
    for match in matches:
        if match.rule.name in by_rule:
            by_rule[match.rule.name].update(match.as_reason())
        else:
            reasons.append(match.as_reason())
    changes: dict[str, Any] = {}
    if reasons != item.reasons:
        changes["reasons"] = reasons
    if item.status == ReviewItem.Status.OPEN:
        if top.rule.priority > item.priority:
            changes.update(priority=top.rule.priority, rule=top.rule)
        if needed > item.reviews_needed:
            changes["reviews_needed"] = needed
    if changes:
        for name, value in changes.items():
            setattr(item, name, value)
        item.save(update_fields=[*changes])
    return item


def turn_flag_quietly(turn_id: int) -> None:
    """For hooks in chat and in the judge tasks: flagging must never break what called it."""
    try:
        turn_flag(turn_id=turn_id)
    except Exception:
        logger.exception("flagging turn %s for review failed", turn_id)
