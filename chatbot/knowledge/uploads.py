"""Where uploaded files wait for ingestion. In a multi-machine deployment KB_UPLOAD_DIR must be a
volume every web and worker process shares (see deploy/SCALING.md)."""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

logger = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME = 120
# Longer than any type we ingest (".jsonl", ".docx"): a longer "extension" is part of the name.
MAX_SUFFIX = 10


def safe_name(original: str) -> str:
    """A file name of at most MAX_NAME safe characters that keeps its extension: the parser
    chooses by the extension, and the name becomes the document's id."""
    name = _UNSAFE.sub("_", Path(original or "upload").name).strip("._") or "upload"
    if len(name) <= MAX_NAME:
        return name
    stem, dot, suffix = name.rpartition(".")
    if not dot or len(suffix) > MAX_SUFFIX:
        return name[:MAX_NAME]
    return f"{stem[: MAX_NAME - len(suffix) - 1].rstrip('._')}.{suffix}"


def upload_store(upload: UploadedFile) -> Path:
    """Save under a fresh directory with a sanitised name; the original name is kept readable."""
    folder = Path(settings.KB_UPLOAD_DIR) / uuid.uuid4().hex
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / safe_name(upload.name or "upload")
    with target.open("wb") as out:
        for piece in upload.chunks():
            out.write(piece)
    return target


def is_upload(location: str) -> bool:
    """Whether a source's location is a file we stored (and so may delete), not a server path."""
    root = Path(settings.KB_UPLOAD_DIR).resolve()
    path = Path(location).resolve()
    return path != root and path.is_relative_to(root)


def upload_discard(location: str) -> None:
    """Delete a stored upload and its folder. A file already gone is no error: deleting twice, or
    after someone cleaned the volume, must not break the delete that triggered it."""
    if not is_upload(location):
        return
    path = Path(location)
    try:
        path.unlink(missing_ok=True)
        folder = path.parent
        if folder.resolve() != Path(settings.KB_UPLOAD_DIR).resolve() and not any(folder.iterdir()):
            folder.rmdir()
    except FileNotFoundError:
        pass
    except OSError:
        logger.warning("could not delete the uploaded file %s", location, exc_info=True)
