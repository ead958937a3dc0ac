"""Fixed tuning and confirming parts of an evaluation set (../shared/evalsets/splits.json).

Every weight and threshold is chosen on the tuning part and reported on both; a lever stays only
if it also helps on the confirming part, which nothing is ever tuned on.

The file holds one object per set, split either by document or by question:
`{"covidqa_dev": {"tune_doc_ids": [...], "confirm_doc_ids": [...]},
  "faq": {"tune_query_ids": [...], "confirm_query_ids": [...]}, "about": "..."}`.
A question belongs to a doc-split set's part when every document that answers it is in that
part (COVID-QA: its one `doc_id`), and to a query-split set's part by its own id.

Which set a questions file is comes from its ids, not its file name: the set whose parts hold
every question (when a set split by question and one split by document both do, the first: it
names the questions themselves). Naming the set (`--set`) only checks that; a question that no part holds is an
error rather than silently left out, since figures over a partly split set would mislead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

PARTS = ("tune", "confirm")
SplitBy = Literal["doc", "query"]
_KEYS: dict[SplitBy, tuple[str, str]] = {
    "doc": ("tune_doc_ids", "confirm_doc_ids"),
    "query": ("tune_query_ids", "confirm_query_ids"),
}
_SHOWN = 3  # ids quoted in an error

Q = TypeVar("Q")


class BadSplits(ValueError):
    """The splits file cannot be used for these questions; the message says why."""


@dataclass(frozen=True)
class SetSplit:
    name: str
    by: SplitBy
    tune: frozenset[str]
    confirm: frozenset[str]

    def ids(self, part: str) -> frozenset[str]:
        return self.tune if part == "tune" else self.confirm

    def part_of(self, question_id: str, doc_ids: Iterable[str]) -> str | None:
        """The part holding the question, or None (unknown ids, or documents in both parts)."""
        keys = {question_id} if self.by == "query" else set(doc_ids)
        for part in PARTS:
            if keys and keys <= self.ids(part):
                return part
        return None


def _id_list(value: object, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(i, str) and i for i in value):
        raise BadSplits(f"{where} must be a list of ids (non-empty texts).")
    return frozenset(value)


def load_splits(path: Path) -> dict[str, SetSplit]:
    """Every set of the file by name."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadSplits(f"Cannot read the splits file {path}: {exc.strerror or exc}.") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadSplits(f"The splits file {path} is not valid JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise BadSplits(f"The splits file {path} must hold a JSON object of sets.")
    splits: dict[str, SetSplit] = {}
    for name, entry in data.items():
        if not isinstance(entry, dict):
            continue  # prose such as "about"
        by = next((b for b, keys in _KEYS.items() if set(keys) <= entry.keys()), None)
        if by is None:
            raise BadSplits(
                f"{path}: set {name!r} needs 'tune_doc_ids' and 'confirm_doc_ids' (split by "
                "document) or 'tune_query_ids' and 'confirm_query_ids' (split by question)."
            )
        tune_key, confirm_key = _KEYS[by]
        tune = _id_list(entry[tune_key], f"{path}: {name}.{tune_key}")
        confirm = _id_list(entry[confirm_key], f"{path}: {name}.{confirm_key}")
        if shared := sorted(tune & confirm):
            raise BadSplits(
                f"{path}: set {name!r} has {len(shared)} ids in both parts, "
                f"e.g. {', '.join(shared[:_SHOWN])}; the parts must not overlap."
            )
        splits[name] = SetSplit(name, by, tune, confirm)
    if not splits:
        raise BadSplits(f"The splits file {path} holds no sets.")
    return splits


def _outside(split: SetSplit, keys: Sequence[tuple[str, Iterable[str]]]) -> list[str]:
    return [qid for qid, docs in keys if split.part_of(qid, docs) is None]


def choose_set(
    splits: dict[str, SetSplit],
    keys: Sequence[tuple[str, Iterable[str]]],
    *,
    name: str | None = None,
    source: str = "the splits file",
) -> SetSplit:
    """The set whose parts hold every question; `keys` is each question's (id, document ids)."""
    keys = [(qid, tuple(docs)) for qid, docs in keys]
    if name is not None:
        if name not in splits:
            raise BadSplits(f"No set {name!r} in {source}; it has {', '.join(sorted(splits))}.")
        outside = _outside(splits[name], keys)
        if outside:
            raise BadSplits(
                f"{len(outside)} of {len(keys)} questions are in neither part of set {name!r} "
                f"in {source}, e.g. {', '.join(outside[:_SHOWN])}."
            )
        return splits[name]
    holding = [split for split in splits.values() if not _outside(split, keys)]
    if len(holding) > 1:
        # The questions' own ids are surer evidence than the ids of the documents they ask about.
        holding = [split for split in holding if split.by == "query"] or holding
    if len(holding) == 1:
        return holding[0]
    if holding:
        raise BadSplits(
            f"The questions fit several sets of {source} "
            f"({', '.join(s.name for s in holding)}); name one with --set."
        )
    closest = min(splits.values(), key=lambda split: len(_outside(split, keys)))
    outside = _outside(closest, keys)
    raise BadSplits(
        f"These questions are not a set of {source} (sets: {', '.join(sorted(splits))}); "
        f"the closest, {closest.name!r}, holds {len(keys) - len(outside)} of {len(keys)}, "
        f"missing e.g. {', '.join(outside[:_SHOWN])}."
    )


def in_part(
    questions: Iterable[Q],
    split: SetSplit,
    part: str,
    key: Callable[[Q], tuple[str, Iterable[str]]],
) -> list[Q]:
    """The questions of `part`, in file order."""
    return [q for q in questions if split.part_of(*key(q)) == part]


def split_parts(
    questions: Sequence[Q],
    *,
    path: Path,
    parts: Sequence[str],
    set_name: str | None,
    key: Callable[[Q], tuple[str, Iterable[str]]],
) -> tuple[SetSplit, dict[str, list[Q]]]:
    """The set the questions are, and the questions of each part asked for."""
    split = choose_set(
        load_splits(path), [key(q) for q in questions], name=set_name, source=str(path)
    )
    return split, {part: in_part(questions, split, part, key) for part in parts}
