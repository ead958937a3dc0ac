"""Reading a training export for a fine-tuning run: its rows split into training and validation,
in the shape each backend takes, and what the rows say about where they came from."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatbot.models import Export, FineTuneJob

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
    }
