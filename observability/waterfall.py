"""A turn's spans laid out as a waterfall, with what each step took in and gave out, personal data
redacted as `settings.TRACE_PII_POLICY` says, and retrieved passages shown only to people who may
read their collection.

The turn's own steps (agent, retrieval, model) form one timeline; judges run in the
background after the answer, so they get a timeline of their own rather than a long empty gap.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AnonymousUser, User

from chatbot.accounts.visibility import HIDDEN_PASSAGE, CollectionGate
from chatbot.compliance.pii import pii_visible, redactor
from chatbot.models import Chunk, Span, Turn

# SVG user units across a timeline; bars narrower than MIN_WIDTH are drawn at MIN_WIDTH.
SCALE = 1000.0
MIN_WIDTH = 3.0
TEXT_LIMIT = 4000
# Attributes shown as inputs and outputs, not in the attribute list.
INPUT_KEYS = ("input", "arguments", "query", "prompt")
OUTPUT_KEYS = ("output", "result", "response")


@dataclass
class Bar:
    span: Span
    depth: int
    x: float
    width: float
    inputs: list[tuple[str, str]] = field(default_factory=list)
    outputs: list[tuple[str, str]] = field(default_factory=list)
    attributes: str = ""
    chunks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def indent(self) -> range:
        return range(self.depth)


@dataclass
class Block:
    title: str
    duration_ms: float
    bars: list[Bar]


@dataclass
class Trace:
    blocks: list[Block]
    tokens_in: int
    tokens_out: int
    cost: Any
    redacted: bool


def _tree(spans: list[Span]) -> list[tuple[Span, int]]:
    """Spans in depth-first order (parents before children, siblings by start), with depth."""
    ids = {s.id for s in spans}
    children: dict[Any, list[Span]] = defaultdict(list)
    roots: list[Span] = []
    for span in spans:
        if span.parent_id in ids:
            children[span.parent_id].append(span)
        else:
            roots.append(span)
    ordered: list[tuple[Span, int]] = []

    def visit(span: Span, depth: int) -> None:
        ordered.append((span, depth))
        for child in sorted(children[span.id], key=lambda s: s.started_at):
            visit(child, depth + 1)

    for root in sorted(roots, key=lambda s: s.started_at):
        visit(root, 0)
    return ordered


def _block(title: str, ordered: list[tuple[Span, int]]) -> Block | None:
    if not ordered:
        return None
    start = min(s.started_at for s, _ in ordered)
    end = max((s.started_at - start).total_seconds() * 1000 + s.duration_ms for s, _ in ordered)
    total = max(end, 0.001)
    bars = []
    for span, depth in ordered:
        offset = (span.started_at - start).total_seconds() * 1000
        x = min(SCALE - MIN_WIDTH, offset / total * SCALE)
        width = max(MIN_WIDTH, min(SCALE - x, span.duration_ms / total * SCALE))
        bars.append(Bar(span=span, depth=depth, x=round(x, 2), width=round(width, 2)))
    return Block(title=title, duration_ms=end, bars=bars)


def _redact_value(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redact_value(v, redact) for v in value]
    if isinstance(value, dict):
        return {k: _redact_value(v, redact) for k, v in value.items()}
    return value


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=2, default=str)
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + " …"


def _chunk_row(
    chunk_id: Any, chunk: Chunk | None, gate: CollectionGate, redact: Callable[[str], str]
) -> dict[str, Any]:
    if chunk is None:
        return {"id": chunk_id, "document_id": None, "title": "(deleted)", "text": ""}
    if not gate.allows(chunk.collection_id):
        # Neither its text nor its document's title: both belong to the collection.
        return {"id": chunk_id, "document_id": None, "title": HIDDEN_PASSAGE, "text": "",
                "hidden": True}  # fmt: skip
    return {
        "id": chunk_id,
        "document_id": chunk.document_id,
        "title": chunk.document.title or chunk.document.external_id,
        "text": _text(redact(chunk.text)),
    }


def _describe(
    bar: Bar,
    turn: Turn,
    redact: Callable[[str], str],
    chunks: dict[int, Chunk],
    gate: CollectionGate,
) -> None:
    span = bar.span
    attributes = dict(span.attributes or {})
    for key in INPUT_KEYS:
        if key in attributes:
            bar.inputs.append((key, _text(_redact_value(attributes.pop(key), redact))))
    for key in OUTPUT_KEYS:
        if key in attributes:
            bar.outputs.append((key, _text(_redact_value(attributes.pop(key), redact))))
    if span.kind == Span.Kind.AGENT and span.parent_id is None:
        bar.inputs.insert(0, ("question", _text(redact(turn.user_text))))
        if turn.answer:
            bar.outputs.insert(0, ("answer", _text(redact(turn.answer))))
    elif span.kind == Span.Kind.RETRIEVAL:
        relevant = set(attributes.get("relevant_chunk_ids") or [])
        similarities = attributes.get("similarities") or []
        for position, chunk_id in enumerate(attributes.get("chunk_ids") or []):
            row = _chunk_row(chunk_id, chunks.get(chunk_id), gate, redact)
            row["similarity"] = similarities[position] if position < len(similarities) else None
            row["relevant"] = chunk_id in relevant
            bar.chunks.append(row)
    if attributes:
        bar.attributes = json.dumps(_redact_value(attributes, redact), indent=2, default=str)


def trace_build(*, turn: Turn, spans: Iterable[Span], user: User | AnonymousUser) -> Trace:
    """The waterfall of `turn` as `user` may see it: personal data as the policy says, and
    passages only from collections shared with them. At most two queries: the chunks retrieval
    returned, and (for someone who does not see every collection) the collections they see."""
    spans = list(spans)
    redact = redactor(user)
    gate = CollectionGate(user)
    ids = {
        chunk_id
        for span in spans
        if span.kind == Span.Kind.RETRIEVAL
        for chunk_id in (span.attributes or {}).get("chunk_ids") or []
        if isinstance(chunk_id, int)
    }
    chunks = Chunk.objects.select_related("document").in_bulk(ids) if ids else {}
    judges = [s for s in spans if s.kind == Span.Kind.JUDGE and s.parent_id is None]
    judge_ids = {s.id for s in judges}
    own = [s for s in spans if s.id not in judge_ids]
    blocks = [
        block
        for block in (
            _block("The turn", _tree(own)),
            _block("Judges (after the answer, in the background)", _tree(judges)),
        )
        if block is not None
    ]
    for block in blocks:
        for bar in block.bars:
            _describe(bar, turn, redact, chunks, gate)
    return Trace(
        blocks=blocks,
        tokens_in=sum(s.tokens_in for s in spans),
        tokens_out=sum(s.tokens_out for s in spans),
        cost=sum((s.cost for s in spans), start=type(turn.cost)(0)),
        redacted=not pii_visible(user),
    )
