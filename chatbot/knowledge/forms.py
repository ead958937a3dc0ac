from __future__ import annotations

from pathlib import Path
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import UploadedFile

from chatbot.models import Collection, Source

TEXT_UPLOAD_TYPES = {".txt", ".md", ".html", ".htm", ".jsonl", ".csv"}
TICKET_UPLOAD_TYPES = {".jsonl", ".csv"}
# Binary types: how a real file of the type starts, and what to say when it doesn't.
BINARY_UPLOAD_TYPES = {
    ".pdf": (b"%PDF-", "This file is not a real PDF."),
    ".docx": (b"PK\x03\x04", "This file is not a real Word (.docx) document (it is not a zip)."),
}
UPLOAD_TYPES = TEXT_UPLOAD_TYPES | set(BINARY_UPLOAD_TYPES)


class CollectionForm(forms.ModelForm):
    groups = forms.ModelMultipleChoiceField(
        queryset=Group.objects.order_by("name"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Roles that may search this collection and get answers from it.",
    )

    class Meta:
        model = Collection
        fields = ["name", "description", "groups"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}


class UploadForm(forms.Form):
    file = forms.FileField(help_text="txt, md, html, pdf, docx, jsonl or csv.")
    kind = forms.ChoiceField(
        choices=[
            (Source.Kind.UPLOAD, "Documents"),
            (
                Source.Kind.TICKETS,
                "Past support tickets (csv or jsonl: subject, body, resolution, tags)",
            ),
        ],
        initial=Source.Kind.UPLOAD,
    )

    def clean_file(self) -> UploadedFile:
        upload: UploadedFile = self.cleaned_data["file"]
        suffix = Path(upload.name or "").suffix.lower()
        if suffix not in UPLOAD_TYPES:
            allowed = ", ".join(sorted(UPLOAD_TYPES))
            raise forms.ValidationError(
                f"Files of type “{suffix or 'none'}” can't be ingested; use {allowed}."
            )
        if not upload.size:
            raise forms.ValidationError("The file is empty.")
        if upload.size > settings.KB_MAX_FILE_BYTES:
            limit = settings.KB_MAX_FILE_BYTES // (1024 * 1024)
            raise forms.ValidationError(f"The file is too large; the limit is {limit} MB.")
        head = upload.read(8192)
        upload.seek(0)
        if suffix in BINARY_UPLOAD_TYPES:
            signature, message = BINARY_UPLOAD_TYPES[suffix]
            # A PDF's header may follow a little junk (the format allows 1024 bytes of it).
            found = signature in head[:1024] if suffix == ".pdf" else head.startswith(signature)
            if not found:
                raise forms.ValidationError(message)
        elif b"\x00" in head:
            raise forms.ValidationError("The file looks binary, not text.")
        return upload

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        upload = cleaned.get("file")
        if upload is not None and cleaned.get("kind") == Source.Kind.TICKETS:
            suffix = Path(upload.name or "").suffix.lower()
            if suffix not in TICKET_UPLOAD_TYPES:
                self.add_error("file", "Past support tickets must be a csv or jsonl file.")
        return cleaned
