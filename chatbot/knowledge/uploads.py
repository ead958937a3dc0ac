"""Where uploaded files wait for ingestion. In a multi-machine deployment KB_UPLOAD_DIR must be a
volume every web and worker process shares (see deploy/SCALING.md)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def upload_store(upload: UploadedFile) -> Path:
    """Save under a fresh directory with a sanitised name; the original name is kept readable."""
    name = _UNSAFE.sub("_", Path(upload.name or "upload").name).strip("._") or "upload"
    folder = Path(settings.KB_UPLOAD_DIR) / uuid.uuid4().hex
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name[:120]
    with target.open("wb") as out:
        for piece in upload.chunks():
            out.write(piece)
    return target
