"""Reading a training export for a fine-tuning run: its rows split into training and validation,
in the shape each backend takes, and what the rows say about where they came from."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db.models import Count, Max

from chatbot.models import Export, Feedback, FineTuneJob, Review

# A validation split needs a few rows to mean anything; below this, every row trains.
MIN_ROWS_FOR_VALIDATION = 5


class DataError(ValueError):
    """The export cannot be trained on; the message is shown to the admin as it is."""


@dataclass
class Rows:
    train: list[dict[str, Any]]
    validation: list[dict[str, Any]]
    sha256: str
    # {collection id: [versions]} the supervised rows' turns read (from their provenance).
    kb_versions: dict[str, list[int]] = field(default_factory=dict)
    turns: int = 0
    reviews: int = 0
    # What the rows were made of, from their provenance: {"approved"/"corrected"/"correction"/
    # "thumbs": rows}, the reviews behind them, and the turns whose thumbs paired them.
    sources: dict[str, int] = field(default_factory=dict)
    review_ids: list[int] = field(default_factory=list)
    thumbed_turn_ids: list[int] = field(default_factory=list)


def _example(method: str, raw: dict[str, Any]) -> dict[str, Any]:
    """A row as TRL takes it: chat messages for supervised runs, prompt/chosen/rejected for DPO."""
    if method == FineTuneJob.Method.SFT:
        messages = raw.get("messages")
        if not isinstance(messages, list) or not messages:
            raise DataError("A supervised fine-tuning row has no chat messages.")
        return {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}
    if not all(isinstance(raw.get(k), str) for k in ("prompt", "chosen", "rejected")):
        raise DataError("A preference row needs prompt, chosen and rejected texts.")
    return {"prompt": raw["prompt"], "chosen": raw["chosen"], "rejected": raw["rejected"]}


def rows_read(*, path: Path, method: str, validation_share: float, seed: int) -> Rows:
    """Every row of the export's file, shuffled with `seed` and split (the same file, share and
    seed always give the same split, so a rerun trains on the same rows)."""
    digest = hashlib.sha256()
    examples: list[dict[str, Any]] = []
    kb_versions: dict[str, set[int]] = {}
    turns: set[int] = set()
    reviews: set[int] = set()
    thumbed: set[int] = set()
    sources: dict[str, int] = {}
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            digest.update(line)
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except ValueError:
                raise DataError(f"Line {number} of the export is not JSON.") from None
            examples.append(_example(method, raw))
            meta = raw.get("metadata") or {}
            for key in ("turn_id", "chosen_turn_id", "rejected_turn_id"):
                if isinstance(meta.get(key), int):
                    turns.add(meta[key])
            if isinstance(meta.get("review_id"), int):
                reviews.add(meta["review_id"])
            source = str(meta.get("source") or "unknown")
            sources[source] = sources.get(source, 0) + 1
            if source == "thumbs":
                thumbed |= {meta[k] for k in ("chosen_turn_id", "rejected_turn_id")
                            if isinstance(meta.get(k), int)}  # fmt: skip
            for collection, version in (meta.get("kb_versions") or {}).items():
                kb_versions.setdefault(str(collection), set()).add(int(version))
    if not examples:
        raise DataError("The export has no rows: there is nothing to train on.")
    random.Random(seed).shuffle(examples)  # noqa: S311  # a reproducible split, not a secret
    held = 0
    if len(examples) >= MIN_ROWS_FOR_VALIDATION and validation_share > 0:
        held = max(1, round(len(examples) * validation_share))
    return Rows(
        train=examples[held:],
        validation=examples[:held],
        sha256=digest.hexdigest(),
        kb_versions={k: sorted(v) for k, v in sorted(kb_versions.items())},
        turns=len(turns),
        reviews=len(reviews),
        sources=dict(sorted(sources.items())),
        review_ids=sorted(reviews),
        thumbed_turn_ids=sorted(thumbed),
    )


def hosted_line(method: str, example: dict[str, Any]) -> str:
    """One line in the OpenAI fine-tuning format (chat messages; or DPO's input and outputs)."""
    if method == FineTuneJob.Method.SFT:
        return json.dumps({"messages": example["messages"]}, ensure_ascii=False)
    return json.dumps(
        {
            "input": {"messages": [{"role": "user", "content": example["prompt"]}]},
            "preferred_output": [{"role": "assistant", "content": example["chosen"]}],
            "non_preferred_output": [{"role": "assistant", "content": example["rejected"]}],
        },
        ensure_ascii=False,
    )


def export_summary(export: Export, rows: Rows) -> dict[str, Any]:
    return {
        "id": export.pk,
        "kind": export.kind,
        "rows": export.rows_written,
        "file": export.path,
        "sha256": rows.sha256,
        "params": export.params,
        "finished_at": export.finished_at.isoformat() if export.finished_at else None,
        "turns": rows.turns,
        "reviews": rows.reviews,
        "built_from": built_from(export, rows),
    }


def built_from(export: Export, rows: Rows) -> dict[str, Any]:
    """What the export was made of. Not datasets: an export reads the reviewed and rated turns
    directly (`evaluation.exports`), so its version is the reviews and thumbs it found when it
    ran. Recorded: the turns' date range it asked for, its rows per source, and how many reviews
    and thumbs stand behind them with the newest of each (a review never changes once given; a
    thumb can, hence its last change), so a later export of the same range shows what is new."""
    reviews = Review.objects.filter(pk__in=rows.review_ids).aggregate(newest=Max("created_at"))
    thumbs = Feedback.objects.filter(turn_id__in=rows.thumbed_turn_ids).aggregate(
        n=Count("pk"), newest=Max("updated_at")
    )
    return {
        "turns_from": export.params.get("date_from"),
        "turns_to": export.params.get("date_to"),
        "sources": rows.sources,
        "reviews": len(rows.review_ids),
        "newest_review_at": reviews["newest"].isoformat() if reviews["newest"] else None,
        "thumbs": thumbs["n"],
        "newest_thumb_at": thumbs["newest"].isoformat() if thumbs["newest"] else None,
        "review_ids_sha256": hashlib.sha256(
            ",".join(map(str, rows.review_ids)).encode()
        ).hexdigest(),
    }
