"""The facts the routing rules read, gathered for each step of a turn: personal data in what would
be sent (the compliance module's recognizers), confidential collections among the passages, the
retrieval's confidence, the asker's groups and what those groups spent today, and where the
step's data may go (residency: the asker's groups, the API key, the passages' collections).

`routing_load` reads the database once per turn: one query for the catalogue with the rules (as
many as the plain choice makes); a budget rule adds one, and the asker if not yet read, a
confidential rule another. Residency reads the collections and the asker's group policies that
limit regions (two small queries). `route_step` is then pure Python, so the agent may route each step
without a thread hop. The evaluation itself is `chatbot.llm.routing.route_plan`.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
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
from chatbot.compliance.pii import patterns_use, pii_find
from chatbot.llm.router import Route
from chatbot.llm.routing import GroupUsage, RouteRefused, RuleSpec, StepFacts, route_plan
from chatbot.llm.types import EndpointConfig, ModelError, Prompt
from chatbot.models import (
    ApiKey,
    Collection,
    GroupPolicy,
    ModelEndpoint,
    PiiPattern,
    RoutingRule,
    Turn,
)
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
    # Residency: what limits the asker's data (their groups, the API key), and the collections
    # that limit their passages' ({id: (name, regions)}); see `StepFacts.residency`.
    asker_regions: tuple[tuple[str, tuple[str, ...]], ...] = ()
    collection_regions: dict[int, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
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
        """The plain choice, before any rule: the requested model, else the default (within the
        asker's regions, when something limits them)."""
        facts = StepFacts(requested=self.requested, residency=self.asker_regions)
        return route_plan(
            rules=(), endpoints=self.endpoints, default_id=self.default_id, facts=facts
        )


# The API key a request came with, set by the API's authentication (`key_residency_set`): the
# turn it starts runs in the same context, so its routing sees the key's regions.
_key_regions: ContextVar[tuple[str, tuple[str, ...]] | None] = ContextVar(
    "key_regions", default=None
)


def key_residency_set(key: ApiKey) -> None:
    """Limit what this request's turns send to the key's regions (none set: no limit)."""
    regions = tuple(key.allowed_regions or ())
    _key_regions.set((f"API key “{key.name}”", regions) if regions else None)


@dataclass(frozen=True)
class _Catalogue:
    """What `_catalogue_and_rules` reads in its one statement."""

    endpoints: list[EndpointConfig]
    default_id: int | None
    rules: tuple[RuleSpec, ...]
    # Residency: {collection id: (name, regions)} and {group id: (name, regions)}, only those
    # that limit regions; and the admins' PII patterns (rows for `patterns_use`).
    collections: dict[int, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    groups: dict[int, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    patterns: tuple[dict[str, Any], ...] = ()


def _rows(value: Any) -> list[dict[str, Any]]:
    return [r if isinstance(r, dict) else json.loads(r) for r in value or []]


def _residency(
    catalogue: _Catalogue, user: User | Callable[[], User] | None
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """What limits the asker's data: their groups' policies (their groups are read only when
    some group is limited) and the request's API key."""
    limits: list[tuple[str, tuple[str, ...]]] = []
    if catalogue.groups and user is not None:
        asker = user if isinstance(user, User) else user()
        for group_id in sorted(asker.groups.values_list("pk", flat=True)):
            if group_id in catalogue.groups:
                name, regions = catalogue.groups[group_id]
                limits.append((f"group “{name}”", regions))
    key = _key_regions.get()
    if key is not None:
        limits.append(key)
    return tuple(limits)


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


@functools.cache
def _catalogue_statement() -> tuple[str, tuple[Any, ...]]:
    """The enabled catalogue and the enabled rules in one statement, as the plain choice reads
    the catalogue alone: this runs before every model call. The rules ride on each catalogue row
    as an uncorrelated subquery, which Postgres runs once; so do the collections and groups that
    limit regions, and the PII patterns. (No enabled model: no rules either, and nothing to
    route to.)

    Compiled once per process: the statement never changes, and Django took about 5.5 ms to
    build it (four JSON subqueries, relabelled and copied) against well under 1 ms for Postgres to
    run it, on the path of every answer's first token."""
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
    collections = (
        Collection.objects.exclude(allowed_regions=[])
        .order_by("pk")
        .values(row=JSONObject(id="pk", name="name", regions="allowed_regions"))
    )
    groups = (
        GroupPolicy.objects.exclude(allowed_regions=[])
        .order_by("group_id")
        .values(row=JSONObject(id="group_id", name="group__name", regions="allowed_regions"))
    )
    patterns = (
        PiiPattern.objects.filter(enabled=True)
        .order_by("entity")
        .values(row=JSONObject(entity="entity", regex="regex", context="context"))
    )
    statement = (
        ModelEndpoint.objects.filter(enabled=True)
        .order_by("name")
        .annotate(
            routing_rules=ArraySubquery(rules),
            limited_collections=ArraySubquery(collections),
            limited_groups=ArraySubquery(groups),
            pii_patterns=ArraySubquery(patterns),
        )
    )
    sql, params = statement.query.sql_with_params()
    return sql, tuple(params)


def _catalogue_and_rules() -> _Catalogue:
    """The enabled catalogue, its rules, the region limits and the PII patterns (one statement,
    `_catalogue_statement`)."""
    sql, params = _catalogue_statement()
    # The four arrays come back as attributes of each row (jsonb text or decoded: `_rows`).
    rows: list[Any] = list(ModelEndpoint.objects.raw(sql, params))
    default_id = next((e.pk for e in rows if e.is_default), None)
    first = rows[0] if rows else None
    specs = tuple(RuleSpec.from_row(r) for r in _rows(first and first.routing_rules))

    def limits(value: Any, kind: str = "") -> dict[int, tuple[str, tuple[str, ...]]]:
        return {
            int(r["id"]): (f"{kind} “{r['name']}”" if kind else str(r["name"]), tuple(r["regions"]))
            for r in _rows(value)
        }

    return _Catalogue(
        endpoints=[EndpointConfig.from_model(e) for e in rows],
        default_id=default_id,
        rules=specs,
        collections=limits(first and first.limited_collections, "collection"),
        groups=limits(first and first.limited_groups),
        patterns=tuple(_rows(first and first.pii_patterns)),
    )


def routing_load(
    *, user: User | Callable[[], User] | None, requested: str | None = None
) -> Routing:
    """Rules, catalogue and, when a rule needs them, the asker's budget groups and the
    confidential collections. `user` may be a loader: it is only called for a budget rule."""
    catalogue = _catalogue_and_rules()
    enabled, default_id, rules = catalogue.endpoints, catalogue.default_id, catalogue.rules
    # Every turn routes before it calls a model: the admins' latest PII patterns, read with the
    # catalogue, are put to use here for the scans and the redaction that follow.
    patterns_use(catalogue.patterns)
    asker_regions, collection_regions = _residency(catalogue, user), catalogue.collections
    routing = Routing(
        rules,
        tuple(enabled),
        default_id,
        requested,
        asker_regions=asker_regions,
        collection_regions=collection_regions,
    )
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
    return Routing(
        rules,
        tuple(enabled),
        default_id,
        requested,
        groups,
        usage,
        confidential,
        asker_regions,
        collection_regions,
    )


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
    limited = dict.fromkeys(
        routing.collection_regions[h.collection_id]
        for h in hits
        if h.collection_id in routing.collection_regions
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
        residency=(*routing.asker_regions, *limited),
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
    residency = routing.asker_regions or any(
        h.collection_id in routing.collection_regions for h in hits
    )
    if not routing.rules and not residency:
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
