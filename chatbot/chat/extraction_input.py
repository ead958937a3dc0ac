"""The extraction page's input: texts pasted (one block per text, blocks separated by a line
holding only ---) or a file uploaded (.txt the same way, .csv one text per row, .jsonl one
{"text": ...} per line), checked for size, type and count with a message a person understands."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

from django import forms
from django.core.files.uploadedfile import UploadedFile

from chatbot.agent.tools.extract import TEXT_LIMIT

MAX_FILE_BYTES = 1024 * 1024
# A batch runs text by text on the routed model (seconds each on the bundled one): 50 is a few
# minutes there, and a run that size stays one page of results.
MAX_TEXTS = 50
UPLOAD_TYPES = (".txt", ".csv", ".jsonl")
SEPARATOR = re.compile(r"^[ \t]*---[ \t]*$", re.MULTILINE)
# Columns a CSV's text is looked for in when the person names none, before the first column.
TEXT_COLUMNS = ("text", "body", "message", "transcript", "review", "content")


def split_blocks(raw: str) -> list[str]:
    """Texts separated by a line with only ---; blank blocks are dropped."""
    return [block.strip() for block in SEPARATOR.split(raw.replace("\r\n", "\n")) if block.strip()]


def _csv_texts(raw: str, column: str) -> list[str]:
    reader = csv.DictReader(io.StringIO(raw))
    headers = [h for h in (reader.fieldnames or []) if h]
    if not headers:
        raise forms.ValidationError("The CSV file has no header row.")
    if column:
        if column not in headers:
            raise forms.ValidationError(
                f"The CSV file has no column “{column}”; its columns are {', '.join(headers)}."
            )
        chosen = column
    else:
        lowered = {h.strip().lower(): h for h in headers}
        chosen = next((lowered[c] for c in TEXT_COLUMNS if c in lowered), headers[0])
    try:
        return [str(row.get(chosen) or "").strip() for row in reader]
    except csv.Error as exc:
        raise forms.ValidationError(f"The CSV file could not be read: {exc}.") from exc


def _jsonl_texts(raw: str) -> list[str]:
    texts = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            raise forms.ValidationError(f"Line {number} of the file is not valid JSON.") from None
        if not isinstance(value, dict) or not isinstance(value.get("text"), str):
            raise forms.ValidationError(f'Line {number} of the file has no "text" field.')
        texts.append(value["text"].strip())
    return texts


def file_texts(upload: UploadedFile, column: str = "") -> list[str]:
    suffix = Path(upload.name or "").suffix.lower()
    content = upload.read()
    if b"\x00" in content[:8192]:
        raise forms.ValidationError("The file looks binary, not text.")
    try:
        raw = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise forms.ValidationError("The file is not UTF-8 text; save it as UTF-8.") from None
    if suffix == ".csv":
        texts = _csv_texts(raw, column)
    elif suffix == ".jsonl":
        texts = _jsonl_texts(raw)
    else:
        texts = split_blocks(raw)
    return [t for t in texts if t]


class ExtractForm(forms.Form):
    schema = forms.ChoiceField(label="Schema")
    texts = forms.CharField(
        label="Texts",
        required=False,
        widget=forms.Textarea(attrs={"rows": 10, "placeholder": "First text…\n---\nSecond text…"}),
        help_text=f"One text per block; put a line with only --- between texts. At most "
        f"{MAX_TEXTS} texts.",
    )
    file = forms.FileField(
        label="Or upload a file",
        required=False,
        help_text=".txt (texts separated by ---), .csv (one text per row) or .jsonl (a "
        '"text" field per line); up to 1 MB.',
    )
    column = forms.CharField(
        label="CSV column",
        required=False,
        max_length=100,
        help_text="The column holding the text; by default “text”, “body” or the first one.",
    )

    def __init__(self, *args: Any, schemas: dict[str, dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["schema"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [
            (name, f"{name} — {entry.get('description', '')}".rstrip(" —"))
            for name, entry in schemas.items()
        ]

    def clean_file(self) -> UploadedFile | None:
        upload: UploadedFile | None = self.cleaned_data.get("file")
        if upload is None:
            return None
        suffix = Path(upload.name or "").suffix.lower()
        if suffix not in UPLOAD_TYPES:
            raise forms.ValidationError(
                f"Files of type “{suffix or 'none'}” can't be read here; use "
                f"{', '.join(UPLOAD_TYPES)}."
            )
        if not upload.size:
            raise forms.ValidationError("The file is empty.")
        if upload.size > MAX_FILE_BYTES:
            raise forms.ValidationError("The file is too large; the limit is 1 MB.")
        return upload

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        upload = cleaned.get("file")
        pasted = (cleaned.get("texts") or "").strip()
        if upload is not None and pasted:
            raise forms.ValidationError("Paste texts or upload a file, not both.")
        try:
            texts = file_texts(upload, cleaned.get("column", "")) if upload else []
        except forms.ValidationError as exc:
            self.add_error("file", exc)
            return cleaned
        if not upload:
            texts = split_blocks(pasted)
        if not texts:
            raise forms.ValidationError("There are no texts: paste some or upload a file.")
        if len(texts) > MAX_TEXTS:
            raise forms.ValidationError(
                f"That is {len(texts)} texts; one run takes at most {MAX_TEXTS}. Split it."
            )
        long = [n for n, t in enumerate(texts, start=1) if len(t) > TEXT_LIMIT]
        if long:
            raise forms.ValidationError(
                f"Text {long[0]} is longer than {TEXT_LIMIT:,} characters; shorten or split it."
            )
        cleaned["batch"] = texts
        cleaned["source_name"] = (upload.name or "")[:200] if upload else ""
        return cleaned
