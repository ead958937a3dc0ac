"""The facts the routing rules read, gathered for each step of a turn: personal data in what would
be sent (the compliance module's recognizers), confidential collections among the passages, the
retrieval's confidence, the asker's groups and what those groups spent today.

`routing_load` reads the database once per turn: one query for the catalogue with the rules (as
many as the plain choice makes); a budget rule adds one, and the asker if not yet read, a
confidential rule another. `route_step` is then pure Python, so the agent may route each step
without a thread hop. The evaluation itself is `chatbot.llm.routing.route_plan`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import Group, User
from django.contrib.postgres.expressions import ArraySubquery
from django.db.models import F, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce, JSONObject
from django.utils import timezone

from chatbot.agent.grounding import Grounding, ground
from chatbot.compliance.pii import pii_find
from chatbot.llm.router import Route
from chatbot.llm.routing import GroupUsage, RouteRefused, RuleSpec, StepFacts, route_plan
from chatbot.llm.types import EndpointConfig, ModelError, Prompt
from chatbot.models import Collection, ModelEndpoint, RoutingRule, Turn
from chatbot.retrieval.search import SearchHit
from chatbot.telemetry.tracing import Tracer


@dataclass(frozen=True)
class Routing:
    """What the rules need from the database for one turn, read once."""

    rules: tuple[RuleSpec, ...]
    endpoints: tuple[EndpointConfig, ...]
    default_id: int | None
    requested: str | None = None
    groups: tuple[str, ...] = ()
    usage: dict[str, GroupUsage] = field(default_factory=dict)
    confidential: dict[int, str] = field(default_factory=dict)
    # Personal data found per text, for this turn only: the agent's later steps send the earlier
    # steps' texts again, and a scan costs about 7 ms per 4,000 characters.
    scanned: dict[str, frozenset[str]] = field(default_factory=dict, compare=False, repr=False)

    def personal_data(self, texts: Iterable[str]) -> tuple[str, ...]:
        """The types of personal data in `texts` (never the data itself), sorted."""
        found: set[str] = set()
        for text in texts:
            if text not in self.scanned:
                self.scanned[text] = frozenset(f.entity for f in pii_find(text))
            found |= self.scanned[text]
        return tuple(sorted(found))

    def wants(self, kind: str, option: str = "") -> bool:
        return any(r.kind == kind and (not option or r.options.get(option)) for r in self.rules)

    def baseline(self) -> Route:
        """The plain choice, before any rule: the requested model, else the default."""
        facts = StepFacts(requested=self.requested)
        return route_plan(
            rules=(), endpoints=self.endpoints, default_id=self.default_id, facts=facts
        )


def _usage_today(user_id: int, names: Iterable[str]) -> dict[str, GroupUsage]:
    """Tokens and cost of today's turns (replays left out) per group of `user_id` among `names`,
    counting every member's turns. One query; each sum reads the turns' created_at index."""
    start = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    today = (
        Turn.objects.filter(
            created_at__gte=start, is_replay=False, conversation__owner__groups=OuterRef("pk")
        )
        .order_by()
        .values("conversation__owner__groups")
    )
    tokens = today.annotate(total=Sum(F("tokens_in") + F("tokens_out"))).values("total")
    cost = today.annotate(total=Sum("cost")).values("total")
    rows = (
        Group.objects.filter(user=user_id, name__in=list(names))
        .annotate(
            tokens=Coalesce(Subquery(tokens), 0),
            spent=Coalesce(Subquery(cost), Decimal(0)),
        )
        .values_list("name", "tokens", "spent")
    )
    return {name: GroupUsage(int(used), Decimal(spent)) for name, used, spent in rows}


def _catalogue_and_rules() -> tuple[list[EndpointConfig], int | None, tuple[RuleSpec, ...]]:
    """The enabled catalogue and the enabled rules in one statement, as the plain choice reads
    the catalogue alone: this runs before every model call. The rules ride on each catalogue row
    as an uncorrelated subquery, which Postgres runs once. (No enabled model: no rules either,
    and nothing to route to.)"""
    rules = (
        RoutingRule.objects.filter(enabled=True)
        .order_by("order", "pk")
        .values(
            row=JSONObject(
                id="pk",
                name="name",
                kind="kind",
                reason="reason",
                options="options",
                endpoint_ids="endpoint_ids",
            )
        )
    )
    rows = list(
        ModelEndpoint.objects.filter(enabled=True)
        .order_by("name")
        .annotate(routing_rules=ArraySubquery(rules))
    )
    default_id = next((e.pk for e in rows if e.is_default), None)
    found = rows[0].routing_rules if rows else []
    specs = tuple(RuleSpec.from_row(r if isinstance(r, dict) else json.loads(r)) for r in found)
    return [EndpointConfig.from_model(e) for e in rows], default_id, specs


def routing_load(
    *, user: User | Callable[[], User] | None, requested: str | None = None
) -> Routing:
    """Rules, catalogue and, when a rule needs them, the asker's budget groups and the
    confidential collections. `user` may be a loader: it is only called for a budget rule."""
    enabled, default_id, rules = _catalogue_and_rules()
    routing = Routing(rules, tuple(enabled), default_id, requested)
    if not rules:
        return routing
    groups: tuple[str, ...] = ()
    usage: dict[str, GroupUsage] = {}
    budget_groups = {str(r.options.get("group")) for r in rules if r.kind == "budget"}
    if budget_groups and user is not None:
        asker = user if isinstance(user, User) else user()
        usage = _usage_today(asker.pk, budget_groups)
        groups = tuple(usage)
    confidential: dict[int, str] = {}
    if routing.wants("sensitivity", "confidential"):
        confidential = dict(Collection.objects.filter(confidential=True).values_list("pk", "name"))
    return Routing(rules, tuple(enabled), default_id, requested, groups, usage, confidential)


def sent_texts(prompt: Prompt | None) -> list[str]:
    """What a prompt sends besides the admin's own system text: history, passages, question."""
    if prompt is None:
        return []
    return [m.content for m in prompt.messages if m.role != "system"]


def step_facts(
    routing: Routing,
    *,
    task: str,
    question: str,
    texts: Iterable[str] = (),
    hits: Sequence[SearchHit] = (),
    top_similarity: float | None = None,
) -> StepFacts:
    """What the rules read about a step that would send `texts` and the passages `hits`."""
    found: tuple[str, ...] = ()
    if routing.wants("sensitivity", "personal_data"):
        found = routing.personal_data([*texts, *(f"{h.heading}\n{h.text}" for h in hits)])
    secret = dict.fromkeys(
        routing.confidential[h.collection_id]
        for h in hits
        if h.collection_id in routing.confidential
    )
    return StepFacts(
        task=task,
        question=question,
        personal_data=found,
        confidential=tuple(secret),
        top_similarity=top_similarity,
        groups=routing.groups,
        usage=routing.usage,
        requested=routing.requested,
    )


def route_step(
    routing: Routing,
    *,
    task: str,
    question: str,
    texts: Iterable[str] = (),
    hits: Sequence[SearchHit] = (),
    top_similarity: float | None = None,
) -> Route:
    """The route for one step that would send `texts` and the passages `hits`. Raises
    `RouteRefused` when no model may take it."""
    if not routing.rules:
        return routing.baseline()
    facts = step_facts(
        routing,
        task=task,
        question=question,
        texts=texts,
        hits=hits,
        top_similarity=top_similarity,
    )
    return route_plan(
        rules=routing.rules, endpoints=routing.endpoints, default_id=routing.default_id, facts=facts
    )


def route_traced(
    tracer: Tracer, *, task: str, decide: Callable[[], Route], previous: Route | None = None
) -> Route:
    """`decide()`, with the rules' verdicts kept as a span of the turn (only when some rule is
    enabled), a refusal included; none when nothing changed since the `previous` step's."""
    started, at = time.perf_counter(), timezone.now()
    try:
        route = decide()
    except RouteRefused as exc:
        _route_span(tracer, task, started, at, verdicts=exc.verdicts, error=exc.user_message)
        raise
    same = previous is not None and (previous.endpoint, previous.verdicts) == (
        route.endpoint,
        route.verdicts,
    )
    if route.verdicts and not same:
        _route_span(
            tracer,
            task,
            started,
            at,
            verdicts=route.verdicts,
            endpoint=route.endpoint.name,
            reason=route.reason,
            fallbacks=[e.name for e in route.fallbacks],
            retries=route.retries,
        )
    return route


def _route_span(
    tracer: Tracer,
    task: str,
    started: float,
    at: datetime,
    *,
    verdicts: tuple[dict[str, Any], ...],
    error: str = "",
    **attributes: Any,
) -> None:
    with tracer.span("agent", "route", task=task, rules=list(verdicts), **attributes) as span:
        span.error = error
    span.started_at = at
    span.duration_ms = (time.perf_counter() - started) * 1000


def route_for_tool(*, task: str, user: User, text: str, tracer: Tracer | None = None) -> Route:
    """The route for a tool's own model call (`extract`): the same rules, for that one text."""
    routing = routing_load(user=user)

    def decide() -> Route:
        return route_step(routing, task=task, question=text, texts=[text])

    return route_traced(tracer, task=task, decide=decide) if tracer is not None else decide()


@dataclass
class DryRun:
    """What the rules would do with a question asked by someone, without calling any model."""

    facts: StepFacts
    grounding: Grounding | None
    verdicts: tuple[dict[str, Any], ...] = ()
    route: Route | None = None
    refusal: str = ""


def route_dry_run(*, user: User, question: str, task: str = "answer") -> DryRun:
    """Route `question` as `user` would see it routed: retrieval as them (for the passages'
    collections and the retrieval's confidence), their groups' usage today, every rule's verdict.
    No model is called and nothing is saved."""
    grounding = None
    hits: Sequence[SearchHit] = ()
    if task == "answer":
        grounding = ground(user=lambda: user, question=question, tracer=Tracer())
        hits = grounding.hits
    routing = routing_load(user=user)
    texts = [question]
    top = grounding.top_similarity if grounding else None
    facts = step_facts(
        routing, task=task, question=question, texts=texts, hits=hits, top_similarity=top
    )
    run = DryRun(facts=facts, grounding=grounding)
    try:
        run.route = route_step(
            routing, task=task, question=question, texts=texts, hits=hits, top_similarity=top
        )
    except RouteRefused as exc:
        run.verdicts, run.refusal = exc.verdicts, exc.user_message
    except ModelError as exc:
        run.refusal = exc.user_message
    else:
        run.verdicts = run.route.verdicts
    return run
