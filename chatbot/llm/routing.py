"""The hybrid router's rules, evaluated for one step of a turn: a pure function of the rules, the
catalogue and the facts the agent layer gathered (`chatbot.agent.routing`), so the dry-run page
and the turn decide alike, and the tests need no database.

The rules run in the admin's order. Sensitivity narrows which models may receive what would be
sent; task and difficulty rules pick a model (the first that matches wins); a budget rule over
its cap switches to a cheaper model or refuses; the availability rule adds retries and a fallback
list. Whatever the order, the chosen model ends up among the allowed ones or the step is refused:
a safety limit cannot be undone by a rule listed after it. A model the caller named (the API) is
never swapped for another: it is kept, or refused in words.

Residency comes before every rule and applies with no rule at all: when the asker's groups, the
API key or a collection among the passages limit the regions their data may go to, only models
whose catalogue region is in every such limit may take the step (`StepFacts.residency`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from chatbot.llm.router import Route, endpoint_default, endpoint_requested
from chatbot.llm.routing_options import (
    DEFAULT_OPTIONS,
    MAX_BACKOFF_S,
    MAX_FIRST_TOKEN_TIMEOUT_S,
    MAX_RETRIES,
    decimal_or_none,
)
from chatbot.llm.types import EndpointConfig, ModelError

REASON_LIMIT = 200

_WORD = re.compile(r"\w+")
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+\S", re.MULTILINE)


class RouteRefused(ModelError):
    """No model may take this step (sensitivity, budget); the message says why in words."""

    def __init__(
        self, user_message: str, *, detail: str = "", verdicts: tuple[dict[str, Any], ...] = ()
    ) -> None:
        super().__init__(user_message, detail=detail)
        self.verdicts = verdicts


@dataclass(frozen=True)
class RuleSpec:
    """A frozen snapshot of a `chatbot.models.RoutingRule`, safe to use from async code."""

    id: int
    name: str
    kind: str
    reason: str
    options: Mapping[str, Any]
    endpoint_ids: tuple[int, ...] = ()

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RuleSpec:
        """From a rule's fields as a mapping (a model's, or a row read as JSON)."""
        kind = str(row["kind"])
        options = {**DEFAULT_OPTIONS.get(kind, {}), **(row.get("options") or {})}
        ids = tuple(i for i in row.get("endpoint_ids") or [] if type(i) is int)
        return cls(int(row["id"]), str(row["name"]), kind, str(row["reason"]), options, ids)


@dataclass(frozen=True)
class GroupUsage:
    tokens: int = 0
    cost: Decimal = Decimal(0)


@dataclass(frozen=True)
class StepFacts:
    """What the rules look at for one step. Personal data comes as entity types only (never the
    text), confidential passages as their collections' names."""

    task: str = "answer"
    question: str = ""
    personal_data: tuple[str, ...] = ()
    confidential: tuple[str, ...] = ()
    top_similarity: float | None = None  # None: no retrieval ran for this step
    groups: tuple[str, ...] = ()
    usage: Mapping[str, GroupUsage] = field(default_factory=dict)
    requested: str | None = None
    # Where the step's data may go: one (what limits it, its regions) per limit, e.g.
    # ('collection “HR”', ("eu",)). Empty: anywhere.
    residency: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def regions(self) -> frozenset[str] | None:
        """The regions every limit allows; None when nothing limits them."""
        if not self.residency:
            return None
        allowed = frozenset(self.residency[0][1])
        for _, regions in self.residency[1:]:
            allowed &= frozenset(regions)
        return allowed


def question_words(text: str) -> int:
    return len(_WORD.findall(text))


def question_parts(text: str) -> int:
    """How many questions one message asks: its question marks, or its list items."""
    return max(1, text.count("?"), len(_LIST_ITEM.findall(text)))


@dataclass
class _State:
    rules: Sequence[RuleSpec]
    by_id: dict[int, EndpointConfig]
    facts: StepFacts
    chosen: EndpointConfig
    allowed: set[int]
    picked_by: str = ""
    reasons: list[str] = field(default_factory=list)
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    refusal: str = ""
    availability: RuleSpec | None = None

    def verdict(
        self, rule: RuleSpec, outcome: str, detail: str, *, acted: bool = False, endpoint: str = ""
    ) -> None:
        """Record what `rule` made of this step; `endpoint` is the model it picked, if any."""
        self.verdicts.append(
            {
                "rule": rule.name,
                "kind": rule.kind,
                "outcome": outcome,
                "detail": detail,
                "reason": rule.reason,
                "endpoint": endpoint,
            }
        )
        if acted and rule.reason not in self.reasons:
            self.reasons.append(rule.reason)

    def first_allowed(self, ids: Sequence[int]) -> EndpointConfig | None:
        return next((self.by_id[i] for i in ids if i in self.allowed and i in self.by_id), None)

    def names(self, ids: Sequence[int]) -> str:
        return ", ".join(self.by_id[i].name for i in ids if i in self.by_id) or "no model"


def _regions_words(regions: Iterable[str]) -> str:
    return " or ".join(sorted(regions)) or "no region at all"


def _residency(state: _State) -> None:
    """Only models in the allowed regions remain; recorded like a rule's verdict, so the trace
    and the dry run show it."""
    regions = state.facts.regions
    if regions is None:
        return
    state.allowed &= {i for i, e in state.by_id.items() if e.region in regions}
    limits = "; ".join(f"{who}: {_regions_words(r)}" for who, r in state.facts.residency)
    permitted = sorted(state.by_id[i].name for i in state.allowed)
    state.verdicts.append(
        {
            "rule": "residency",
            "kind": "residency",
            "outcome": "limited",
            "detail": f"data must stay in {_regions_words(regions)} ({limits}): "
            + (
                f"only {', '.join(permitted)} may receive it"
                if permitted
                else "no model runs there"
            ),
            "reason": RESIDENCY_REASON,
            "endpoint": "",
        }
    )
    if state.chosen.id not in state.allowed:
        state.reasons.append(RESIDENCY_REASON)


RESIDENCY_REASON = "Data stays in its allowed regions"


def _residency_refusal(state: _State) -> str:
    regions = state.facts.regions
    assert regions is not None
    why = "; ".join(f"{who} allows {_regions_words(r)}" for who, r in state.facts.residency)
    if not regions:
        return (
            f"The places your data may go do not overlap ({why}), so no model may take it. "
            "An admin can change the regions under Console."
        )
    return (
        f"Your data must stay in {_regions_words(regions)} ({why}); no enabled model runs there. "
        "An admin can add one under Console → Models."
    )


def _sensitivity(rule: RuleSpec, state: _State) -> None:
    facts, options = state.facts, rule.options
    wanted = options.get("entities")
    entities = [e for e in facts.personal_data if not wanted or e in wanted]
    found = []
    if options.get("personal_data") and entities:
        found.append(f"personal data ({', '.join(entities)})")
    if options.get("confidential") and facts.confidential:
        found.append(f"confidential passages ({', '.join(facts.confidential)})")
    if not found:
        state.verdict(rule, "no limit", "no personal or confidential data in what would be sent")
        return
    state.allowed &= set(rule.endpoint_ids)
    permitted = [i for i in rule.endpoint_ids if i in state.allowed]
    state.verdict(
        rule,
        "limited",
        f"{' and '.join(found)}: only {state.names(permitted)} may receive it",
        acted=True,
    )


def _pick(rule: RuleSpec, state: _State, why: str, candidates: Sequence[int]) -> None:
    if state.facts.requested:
        state.verdict(rule, "kept", f"{why}; the caller named {state.chosen.name}")
        return
    if state.picked_by:
        state.verdict(rule, "already chosen", f"{why}; “{state.picked_by}” chose first")
        return
    target = state.first_allowed(candidates)
    if target is None:
        state.verdict(rule, "no model", f"{why}, but none of its models may take this step")
        return
    state.chosen, state.picked_by = target, rule.name
    state.verdict(rule, "chose", f"{why}: {target.name}", acted=True, endpoint=target.name)


def _task(rule: RuleSpec, state: _State) -> None:
    facts, options = state.facts, rule.options
    tasks = options.get("tasks") or []
    task = facts.task
    if task == "answer":
        short = int(options.get("short_words") or 0)
        words = question_words(facts.question)
        if short and words <= short and question_parts(facts.question) == 1:
            task = "short_answer"
    if task not in tasks:
        state.verdict(rule, "no match", f"a {task.replace('_', ' ')} step is not one of its tasks")
        return
    _pick(rule, state, f"a {task.replace('_', ' ')} step", rule.endpoint_ids)


def _strongest(state: _State) -> list[int]:
    """Allowed models, the priciest first: price is the catalogue's measure of strength."""
    allowed = [state.by_id[i] for i in state.allowed if i in state.by_id]
    allowed.sort(key=lambda e: (-e.price_output_per_mtok, -e.context_window, e.name))
    return [e.id for e in allowed]


def _difficulty(rule: RuleSpec, state: _State) -> None:
    facts, options = state.facts, rule.options
    if facts.task not in {"answer", "choose"}:
        state.verdict(rule, "no match", f"a {facts.task} step is not an answer")
        return
    signals = []
    words, parts = question_words(facts.question), question_parts(facts.question)
    min_words, min_parts = int(options.get("min_words") or 0), int(options.get("min_parts") or 0)
    min_similarity = float(options.get("min_similarity") or 0)
    if min_words and words >= min_words:
        signals.append(f"{words} words")
    if min_parts and parts >= min_parts:
        signals.append(f"{parts} parts")
    confidence = facts.top_similarity
    if min_similarity and confidence is not None and confidence < min_similarity:
        signals.append(f"retrieval confidence {confidence:.2f}")
    if not signals:
        state.verdict(rule, "no match", f"{words} words, {parts} part(s): not a hard question")
        return
    candidates = list(rule.endpoint_ids) or _strongest(state)
    _pick(rule, state, f"a hard question ({', '.join(signals)})", candidates)


def _budget(rule: RuleSpec, state: _State) -> None:
    facts, options = state.facts, rule.options
    group = str(options.get("group") or "")
    if group not in facts.groups:
        state.verdict(rule, "no match", f"the person is not in the group “{group}”")
        return
    used = facts.usage.get(group, GroupUsage())
    max_tokens, max_cost = (
        int(options.get("max_tokens") or 0),
        decimal_or_none(options.get("max_cost")),
    )
    over = []
    if max_tokens and used.tokens >= max_tokens:
        over.append(f"{used.tokens:,} of {max_tokens:,} tokens")
    if max_cost is not None and used.cost >= max_cost:
        over.append(f"{used.cost:.2f} of {max_cost:.2f} in cost")
    if not over:
        state.verdict(
            rule, "under the cap", f"“{group}” used {used.tokens:,} tokens, {used.cost:.4f} today"
        )
        return
    spent = " and ".join(over)
    cheaper = None if facts.requested else state.first_allowed(rule.endpoint_ids)
    if cheaper is None:
        state.refusal = str(options.get("message") or "") or (
            f"Your team's daily budget for the assistant is used up ({spent} today). It resets "
            "at midnight; an admin can raise it under Console → Routing."
        )
        state.verdict(rule, "refused", f"“{group}” is over its cap ({spent})", acted=True)
        return
    state.chosen, state.picked_by = cheaper, rule.name
    detail = f"“{group}” is over its cap ({spent}): {cheaper.name}"
    state.verdict(rule, "switched", detail, acted=True, endpoint=cheaper.name)


def _availability(rule: RuleSpec, state: _State) -> None:
    if state.availability is not None:
        state.verdict(rule, "no match", f"“{state.availability.name}” already plans fallbacks")
        return
    state.availability = rule
    retries = int(rule.options.get("retries") or 0)
    state.verdict(
        rule, "fallbacks", f"{retries} retr{'y' if retries == 1 else 'ies'}, then the next model"
    )


KINDS: dict[str, Callable[[RuleSpec, _State], None]] = {
    "sensitivity": _sensitivity,
    "task": _task,
    "difficulty": _difficulty,
    "budget": _budget,
    "availability": _availability,
}


def _settle(state: _State) -> None:
    """Keep the chosen model within what the sensitivity rules allow, or refuse."""
    if state.chosen.id in state.allowed:
        return
    limits = [v["detail"] for v in state.verdicts if v["outcome"] == "limited"]
    residency = state.facts.regions is not None
    if residency and not state.allowed:
        state.refusal = _residency_refusal(state)
        return
    if state.facts.requested:
        state.refusal = (
            f"The model '{state.chosen.name}' may not receive this ({'; '.join(limits)}). Ask "
            "without naming a model, or name one that may."
        )
        return
    order = [i for r in state.rules if r.kind == "sensitivity" for i in r.endpoint_ids]
    if residency:
        # Any model in the allowed regions will do: the default's peers, by name.
        order += sorted(state.allowed, key=lambda i: state.by_id[i].name)
    replacement = state.first_allowed(order)
    if replacement is None:
        state.refusal = (
            "No model that may receive this question's data is available right now "
            f"({'; '.join(limits)}). An admin can allow one under Console → Routing."
        )
        return
    state.chosen = replacement
    for verdict in state.verdicts:
        if verdict["outcome"] == "limited":
            verdict["endpoint"] = replacement.name


def _fallbacks(state: _State) -> tuple[EndpointConfig, ...]:
    rule = state.availability
    if rule is None or state.facts.requested:
        return ()
    return tuple(
        state.by_id[i]
        for i in dict.fromkeys(rule.endpoint_ids)
        if i in state.allowed and i in state.by_id and i != state.chosen.id
    )


def route_plan(
    *,
    rules: Sequence[RuleSpec],
    endpoints: Sequence[EndpointConfig],
    default_id: int | None,
    facts: StepFacts,
) -> Route:
    """The route for one step; raises `RouteRefused` (or `NoModelAvailable`) with a message for
    the person. With no rules it is exactly the plain choice: requested, else the default."""
    if facts.requested:
        base = endpoint_requested(endpoints, facts.requested)
    else:
        base = endpoint_default(endpoints, default_id)
    if not rules and not facts.residency:
        return base
    by_id = {e.id: e for e in endpoints}
    state = _State(rules, by_id, facts, chosen=base.endpoint, allowed=set(by_id))
    _residency(state)
    for rule in rules:
        apply = KINDS.get(rule.kind)
        if apply is None:  # a kind this code no longer knows: say so, decide nothing
            state.verdict(rule, "skipped", f"unknown kind of rule “{rule.kind}”")
            continue
        apply(rule, state)
        if state.refusal:
            break
    if not state.refusal:
        _settle(state)
    verdicts = tuple(state.verdicts)
    if state.refusal:
        detail = "; ".join(f"{v['rule']}: {v['outcome']} ({v['detail']})" for v in verdicts)
        raise RouteRefused(state.refusal, detail=f"route refused: {detail}", verdicts=verdicts)
    availability = state.availability
    options = availability.options if availability is not None else {}
    reason = "; ".join(state.reasons) or base.reason
    return Route(
        endpoint=state.chosen,
        reason=reason[:REASON_LIMIT],
        fallbacks=_fallbacks(state),
        retries=min(MAX_RETRIES, int(options.get("retries") or 0)),
        backoff_s=min(MAX_BACKOFF_S, float(options.get("backoff_s") or 0)),
        first_token_timeout_s=min(
            MAX_FIRST_TOKEN_TIMEOUT_S, float(options.get("first_token_timeout_s") or 0)
        ),
        verdicts=verdicts,
    )
