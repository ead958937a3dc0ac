"""A tiny evaluation set in the ../shared/evalsets shapes, and the jsonl writer the evaluation
tests share."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

DOCUMENTS = [
    {"id": "kb-1", "title": "Reset a password",
     "text": "Open the sign-in page and click 'Forgot password'. The emailed link expires after 30 minutes."},
    {"id": "kb-2", "title": "Connect to the VPN",
     "text": "Install the VPN client, sign in with your staff account and pick the nearest gateway."},
    {"id": "kb-3", "title": "Printer jams",
     "text": "When the office printer jams, open tray 2, remove the crumpled paper and restart it."},
    {"id": "kb-4", "title": "Expense claims",
     "text": "Submit receipts for travel expenses within 60 days through the finance portal."},
]  # fmt: skip


def write_jsonl(path: Path, rows: Sequence[Mapping[str, object] | str]) -> Path:
    """One row a line; a string is written as it is (to make a bad line)."""
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path
