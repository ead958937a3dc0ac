"""Training exports: supervised fine-tuning rows from approved and corrected answers, and
preference pairs (prompt, chosen, rejected) from corrections and thumbs.

Every row is PII-scrubbed, written once (a normalised fingerprint drops duplicates) and carries its
provenance back to the turn and review it came from. A fine-tuning row has the shape of the live
prompt, and is left out when it cites a passage its exporter may not read. An export runs in the background; running it
again rewrites the same file from scratch, so a redelivered task cannot leave half a file behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from chatbot.accounts.visibility import CollectionGate
from chatbot.agent.grounding import numbered_source, sources_prompt
from chatbot.compliance.pii import Scrubber, patterns_load
from chatbot.jobs import job_submit_on_commit
from chatbot.llm.prompts import DEFAULT_SYSTEM_PROMPT, chat_messages
from chatbot.llm.types import Message, Prompt
from chatbot.models import Export, Review
from evaluation.exports import selectors
from evaluation.exports.fingerprints import fingerprint, normalised

logger = logging.getLogger(__name__)

BATCH = 200  # reviews loaded (with their turns and context) at a time
PROGRESS_EVERY_S = 0.5  # at most two progress writes a second
ProgressFn = Callable[[Export], None]


class InvalidExport(ValueError):
    """An export that cannot be started; the message is shown to the person as it is."""


def exports_dir() -> Path:
    return Path(settings.EXPORTS_DIR)


def export_file(export: Export) -> Path | None:
    """The export's file, only when it lies inside the exports folder and exists."""
    if not export.path:
        return None
    root = exports_dir().resolve()
    candidate = (root / export.path).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate


def _date(value: date | str | None, label: str) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InvalidExport(f"The {label} date must look like 2025-01-31.") from None


def export_create(
    *,
    kind: str,
    date_from: date | str | None = None,
    date_to: date | str | None = None,
    user: User | None = None,
    queue: bool = True,
) -> Export:
    if kind not in Export.Kind.values:
        raise InvalidExport(f"Unknown export kind {kind!r}; choose one of sft or dpo.")
    start, end = _date(date_from, "start"), _date(date_to, "end")
    if start and end and start > end:
        raise InvalidExport("The start date is after the end date.")
    params = {
        "date_from": start.isoformat() if start else None,
        "date_to": end.isoformat() if end else None,
    }
    export = Export.objects.create(kind=kind, params=params, created_by=user)
    if queue:
        from evaluation.exports.tasks import export_run_task

        job_submit_on_commit(export_run_task, export.pk)
    return export


# --- rows ----------------------------------------------------------------------------------------


@dataclass
class Row:
    """One example before scrubbing: `fields` are the texts, `key` the parts that make it unique."""

    fields: dict[str, str]
    key: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict)


def _prompt_messages(question: str, contexts: list[selectors.ContextBlock]) -> tuple[str, str]:
    """(system, user) as a chat model is sent them live (`grounding.sources_prompt`): the
    instructions in the system message, the numbered passages as data before the question.
    The answer cites [n] against these passages, so the example keeps them or it teaches citing
    sources that are not there."""
    asked = Prompt((Message("system", DEFAULT_SYSTEM_PROMPT), Message("user", question)))
    blocks = [numbered_source(c.number, c.label, c.text) for c in contexts]
    system, user = chat_messages(sources_prompt(asked, blocks))
    return system.content, user.content


@dataclass
class _Reader:
    """Whom the export is written for. A row whose turn was given a passage of a collection they
    may not read is left out whole: its answer cites that passage, so keeping the row without it
    would teach citing what is not there. `gate` is None for the server's command line."""

    gate: CollectionGate | None
    left_out: int = 0
    collections: set[int] = field(default_factory=set)

    def allows(self, contexts: list[selectors.ContextBlock]) -> bool:
        cited = {c.collection_id for c in contexts}
        if self.gate is not None and not all(self.gate.allows(pk) for pk in cited):
            self.left_out += 1
            return False
        self.collections |= cited
        return True

    def params(self, export: Export) -> dict[str, Any]:
        return {
            **export.params,
            "rows_left_out_unshared": self.left_out,
            "collections": sorted(self.collections),
        }


def _sft_rows(review_ids: list[int], reader: _Reader) -> Iterator[Row | None]:
    """One row per review, or None for one left out (so progress still counts it)."""
    for offset in range(0, len(review_ids), BATCH):
        reviews = selectors.reviews_with_turns(ids=review_ids[offset : offset + BATCH])
        contexts = selectors.turn_contexts(turn_ids={r.turn_id for r in reviews})
        for review in reviews:
            turn = review.turn
            given = contexts.get(turn.pk, [])
            if not reader.allows(given):
                yield None
                continue
            corrected = review.corrected_answer.strip()
            answer = corrected or turn.answer
            system, user = _prompt_messages(turn.user_text, given)
            yield Row(
                fields={"system": system, "user": user, "assistant": answer},
                key=("user", "assistant"),
                metadata={
                    "turn_id": turn.pk,
                    "review_id": review.pk,
                    "source": "corrected" if corrected else "approved",
                    "model": turn.endpoint.name if turn.endpoint else None,
                    "kb_versions": turn.kb_versions,
                    "reviewed_at": review.created_at.isoformat(),
                },
            )


def _pair(prompt: str, chosen: str, rejected: str, **metadata: Any) -> Row:
    return Row(
        fields={"prompt": prompt, "chosen": chosen, "rejected": rejected},
        key=("prompt", "chosen", "rejected"),
        metadata=metadata,
    )


def _dpo_rows(params: dict[str, Any]) -> list[Row]:
    """Corrections pair the corrected answer with the original. Thumbs pair, for the same
    question asked in different turns, a liked answer (or a correction) with a disliked one.

    The prompt is the question alone: pairs from different turns were answered from different
    retrieved context, so no one context belongs to both answers.
    """
    rows: list[Row] = []
    goods: dict[str, list[tuple[str, int, int | None]]] = defaultdict(list)
    questions: dict[str, str] = {}
    fixes: list[Review] = selectors.corrections(params=params)
    for review in fixes:
        turn = review.turn
        goods[normalised(turn.user_text)].append((review.corrected_answer, turn.pk, review.pk))
        if normalised(review.corrected_answer) == normalised(turn.answer):
            continue
        rows.append(
            _pair(
                turn.user_text, review.corrected_answer, turn.answer, source="correction",
                chosen_turn_id=turn.pk, rejected_turn_id=turn.pk, review_id=review.pk,
            )
        )  # fmt: skip
    bads: dict[str, list[selectors.RatedTurn]] = defaultdict(list)
    for rated in selectors.rated_turns(params=params):
        question = normalised(rated.question)
        questions.setdefault(question, rated.question)
        if rated.net > 0:
            goods[question].append((rated.answer, rated.turn_id, None))
        else:
            bads[question].append(rated)
    for question, disliked in bads.items():
        for index, bad in enumerate(disliked):
            rejected = normalised(bad.answer)
            others = [
                g
                for g in goods.get(question, [])
                if g[1] != bad.turn_id and normalised(g[0]) != rejected
            ]
            if not others:
                continue
            answer, turn_id, review_id = others[index % len(others)]
            rows.append(
                _pair(
                    questions[question], answer, bad.answer, source="thumbs",
                    chosen_turn_id=turn_id, rejected_turn_id=bad.turn_id, review_id=review_id,
                )
            )  # fmt: skip
    return rows


# --- running -------------------------------------------------------------------------------------


@dataclass
class _Writer:
    export: Export
    scrub: Scrubber = field(default_factory=Scrubber)
    seen: set[str] = field(default_factory=set)
    written: int = 0
    duplicates: int = 0

    def line(self, row: Row | None) -> str | None:
        if row is None:
            return None
        cleaned = {name: self.scrub(text) for name, text in row.fields.items()}
        if any(not cleaned[k].strip() for k in row.key):
            return None
        digest = fingerprint(*(cleaned[k] for k in row.key))
        if digest in self.seen:
            self.duplicates += 1
            return None
        self.seen.add(digest)
        self.written += 1
        metadata = {**row.metadata, "export_id": self.export.pk}
        if self.export.kind == Export.Kind.SFT:
            messages = [{"role": role, "content": cleaned[role]} for role in row.fields]
            return json.dumps({"messages": messages, "metadata": metadata}, ensure_ascii=False)
        return json.dumps({**cleaned, "metadata": metadata}, ensure_ascii=False)


def _save(export: Export, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(export, name, value)
    Export.objects.filter(pk=export.pk).update(**fields)


def export_run(*, export_id: int, on_progress: ProgressFn | None = None) -> Export | None:
    """Write one export's file. Safe to run twice: a finished export is left as it is, an
    unfinished one is written again from the start."""
    export = Export.objects.filter(pk=export_id).first()
    if export is None or export.status == Export.Status.DONE:
        return export
    _save(export, status=Export.Status.RUNNING, error="", rows_total=0, rows_done=0,
          rows_written=0, duplicates_dropped=0, pii_redacted=0, path="")  # fmt: skip
    patterns_load()  # the scrubber hides the admins' kinds too, as they are now
    name = f"{export.kind}-{export.pk:06d}.jsonl"
    folder = exports_dir()
    partial = folder / f".{name}.part"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        reader = _Reader(gate=CollectionGate(export.created_by) if export.created_by else None)
        rows: Iterator[Row | None] | list[Row]
        if export.kind == Export.Kind.SFT:
            ids = selectors.sft_review_ids(params=export.params)
            total, rows = len(ids), _sft_rows(ids, reader)
        else:
            rows = _dpo_rows(export.params)
            total = len(rows)
        _save(export, rows_total=total)
        writer = _Writer(export=export)
        last = time.monotonic()
        with partial.open("w", encoding="utf-8") as out:
            for done, row in enumerate(rows, start=1):
                line = writer.line(row)
                if line is not None:
                    out.write(line + "\n")
                if time.monotonic() - last >= PROGRESS_EVERY_S:
                    last = time.monotonic()
                    _save(export, rows_done=done, rows_written=writer.written,
                          duplicates_dropped=writer.duplicates,
                          pii_redacted=writer.scrub.redacted,
                          params=reader.params(export))  # fmt: skip
                    if on_progress is not None:
                        on_progress(export)
        os.replace(partial, folder / name)
    except Exception as exc:
        logger.exception("export %s failed", export_id)
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        _save(export, status=Export.Status.FAILED, finished_at=timezone.now(),
              error=f"The export failed ({type(exc).__name__}: {exc}).")  # fmt: skip
        return export
    _save(export, status=Export.Status.DONE, rows_done=total, rows_written=writer.written,
          duplicates_dropped=writer.duplicates, pii_redacted=writer.scrub.redacted, path=name,
          params=reader.params(export), finished_at=timezone.now())  # fmt: skip
    if on_progress is not None:
        on_progress(export)
    return export
