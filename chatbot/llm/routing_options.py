"""What each kind of routing rule may be told (its options), their defaults, and the checks on what
an admin writes (Console → Routing). The evaluation is `chatbot.llm.routing`."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

# The steps a turn routes: its answer, the agent's choice of the next step, and the model calls
# of the classify and extract tools.
TASKS = ("answer", "choose", "classify", "extract")
# What a task rule may name: the tools' tasks, and "short_answer", an answer to a short,
# single-part question.
TASK_RULE_TASKS = ("classify", "extract", "short_answer")

DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "sensitivity": {"personal_data": True, "confidential": True},
    "task": {"tasks": ["classify", "extract", "short_answer"], "short_words": 12},
    # 0 switches a signal off.
    "difficulty": {"min_words": 60, "min_parts": 2, "min_similarity": 0.5},
    "budget": {"group": "agent", "max_tokens": 200_000, "max_cost": "5.00"},
    "availability": {"retries": 1, "backoff_s": 0.2, "first_token_timeout_s": 0},
}
# Beyond these a rule would hold a turn for longer than a person waits.
MAX_RETRIES = 3
MAX_BACKOFF_S = 5.0
MAX_FIRST_TOKEN_TIMEOUT_S = 120.0


def decimal_or_none(value: object) -> Decimal | None:
    """A cap as an admin may write it ("5.00", 5); None for none, zero (no cap) or nonsense."""
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() and amount > 0 else None


def _number(options: Mapping[str, Any], key: str, low: float, high: float) -> list[str]:
    value = options.get(key)
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, int | float):
        return [f'"{key}" must be a number.']
    if not low <= value <= high:
        return [f'"{key}" must be between {low:g} and {high:g}.']
    return []


def options_problems(kind: str, options: Mapping[str, Any], endpoint_count: int) -> list[str]:
    """What is wrong with a rule's settings, in words; [] when nothing is."""
    if kind not in DEFAULT_OPTIONS:
        return [f"Unknown kind of rule “{kind}”."]
    known = set(DEFAULT_OPTIONS[kind]) | {"entities", "message"}
    problems = [f'Unknown setting "{k}" for a {kind} rule.' for k in options if k not in known]
    if kind == "sensitivity":
        if not options.get("personal_data", True) and not options.get("confidential", True):
            problems.append('Watch for something: "personal_data", "confidential" or both.')
    elif kind == "task":
        tasks = options.get("tasks", DEFAULT_OPTIONS["task"]["tasks"])
        if not isinstance(tasks, list) or not tasks or set(tasks) - set(TASK_RULE_TASKS):
            problems.append(f'"tasks" must list some of: {", ".join(TASK_RULE_TASKS)}.')
        problems += _number(options, "short_words", 0, 200)
        if not endpoint_count:
            problems.append("Choose the small model(s) these steps go to.")
    elif kind == "difficulty":
        problems += _number(options, "min_words", 0, 10_000)
        problems += _number(options, "min_parts", 0, 50)
        problems += _number(options, "min_similarity", 0, 1)
    elif kind == "budget":
        if not str(options.get("group") or "").strip():
            problems.append('Name the group (role) the cap applies to, e.g. "group": "agent".')
        problems += _number(options, "max_tokens", 0, 10**12)
        cost = options.get("max_cost")
        if cost not in (None, "", 0, "0") and decimal_or_none(cost) is None:
            problems.append('"max_cost" must be an amount such as "5.00" (0 or null: no cap).')
        if not options.get("max_tokens") and decimal_or_none(cost) is None:
            problems.append('Set "max_tokens", "max_cost" or both.')
    elif kind == "availability":
        problems += _number(options, "retries", 0, MAX_RETRIES)
        problems += _number(options, "backoff_s", 0, MAX_BACKOFF_S)
        problems += _number(options, "first_token_timeout_s", 0, MAX_FIRST_TOKEN_TIMEOUT_S)
    return problems
