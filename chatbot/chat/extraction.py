"""The extraction page's runs: a batch of texts filled into one of the admin's schemas by the
`extract` tool's core (`chatbot.agent.tools.extract.extract_fields`), in the background.

A run is saved first and its job queued on commit; the job does one text at a time, saving each
result as it goes, so the page shows progress and a job sent twice (a lost message, a restarted
worker) carries on from the first text without a result instead of starting over.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from chatbot.agent.tools.access import tools_allowed
from chatbot.agent.tools.base import ToolFailed
from chatbot.agent.tools.extract import extract_fields
from chatbot.agent.tools.extract_schemas import (
    Definition,
    columns_of,
    schema_problems,
    schemas_of,
)
from chatbot.jobs import job_submit_on_commit
from chatbot.llm.pricing import usage_cost
from chatbot.llm.router import route_choose
from chatbot.llm.types import EndpointConfig, ModelError, Usage
from chatbot.models import ExtractionRun

logger = logging.getLogger(__name__)

TASK = "chat.extraction_run"
# The same batch sent again within this window (a double click, a reload of the POST) is the
# same run; after it, sending it again is a deliberate new run.
REPEAT_WINDOW = timedelta(minutes=10)
TEXT_PREVIEW = 200
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
NOT_ALLOWED = (
    "Extraction is not turned on for your role. An admin can turn on the “Extraction” tool "
    "for it under Console → Agent tools."
)


# --- reads ---------------------------------------------------------------------------------


def extraction_schemas_for(user: User) -> dict[str, dict[str, Any]] | None:
    """The admin's usable schemas when this person may use the extract tool; None when not."""
    allowed = tools_allowed(user).get("extract")
    if allowed is None:
        return None
    return {
        name: entry
        for name, entry in schemas_of(allowed.options).items()
        if not schema_problems(name, entry)
    }


def extraction_runs_for(user: User) -> QuerySet[ExtractionRun]:
    return ExtractionRun.objects.filter(owner=user).defer("texts", "results", "definition")


def extraction_run_get_for(user: User, run_id: int) -> ExtractionRun:
    """The person's own run; anyone else's is DoesNotExist (a 404), so ids reveal nothing."""
    return ExtractionRun.objects.get(pk=run_id, owner=user)


@dataclass(frozen=True)
class ResultRow:
    number: int
    text: str
    values: list[Any]
    error: str
    pending: bool = False


def extraction_rows(run: ExtractionRun) -> list[ResultRow]:
    """One row per text, in order: its fields as the schema's columns, its error, or pending."""
    columns = columns_of(run.schema)
    rows = []
    for index, text in enumerate(run.texts):
        preview = text[:TEXT_PREVIEW]
        if index >= len(run.results):
            rows.append(ResultRow(index + 1, preview, [], "", pending=True))
            continue
        result = run.results[index]
        fields = result.get("fields") or {}
        values = [fields.get(c) for c in columns] if result.get("fields") is not None else []
        rows.append(ResultRow(index + 1, preview, values, str(result.get("error") or "")))
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        # A number is a number to a spreadsheet, never a formula (a leading minus included).
        return str(value)
    text = str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def extraction_csv(run: ExtractionRun) -> str:
    """The schema's columns, then the text (its first 200 characters) and any error; every
    string escaped against formula injection (model output and texts are untrusted)."""
    columns = columns_of(run.schema)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([_cell(c) for c in [*columns, "text", "error"]])
    for row in extraction_rows(run):
        if row.pending:
            continue
        values = row.values or [None] * len(columns)
        writer.writerow([_cell(v) for v in [*values, row.text, row.error]])
    return out.getvalue()


# --- writes --------------------------------------------------------------------------------


def _content_hash(schema_name: str, entry: dict[str, Any], texts: list[str]) -> str:
    payload = json.dumps([schema_name, entry, texts], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def extraction_run_submit(
    *,
    owner: User,
    schema_name: str,
    entry: dict[str, Any],
    texts: list[str],
    source_name: str = "",
) -> tuple[ExtractionRun, bool]:
    """Save a run and queue its job on commit; returns (run, created). The same person sending
    the same schema and texts within REPEAT_WINDOW gets their earlier run (unless it failed)."""
    digest = _content_hash(schema_name, entry, texts)
    with transaction.atomic():
        # One submission per person at a time, so a double click cannot make two runs.
        User.objects.select_for_update().filter(pk=owner.pk).first()
        earlier = (
            ExtractionRun.objects.filter(
                owner=owner,
                content_hash=digest,
                created_at__gte=timezone.now() - REPEAT_WINDOW,
            )
            .exclude(status=ExtractionRun.Status.FAILED)
            .order_by("-created_at")
            .first()
        )
        if earlier is not None:
            return earlier, False
        run = ExtractionRun.objects.create(
            owner=owner,
            schema_name=schema_name,
            definition=entry,
            texts=texts,
            content_hash=digest,
            source_name=source_name,
            total=len(texts),
        )
        job_submit_on_commit(TASK, run.pk)
    return run, True


def _save_progress(run: ExtractionRun, usage: Usage, endpoint: EndpointConfig) -> None:
    run.done = len(run.results)
    run.failed = sum(1 for r in run.results if r.get("error"))
    run.tokens_in += usage.input_tokens
    run.tokens_out += usage.output_tokens
    run.cost += usage_cost(endpoint, usage)
    run.save(update_fields=["results", "done", "failed", "tokens_in", "tokens_out", "cost"])


def extraction_run_fail(*, run_id: int, reason: str) -> None:
    ExtractionRun.objects.filter(pk=run_id).exclude(status=ExtractionRun.Status.DONE).update(
        status=ExtractionRun.Status.FAILED, error=reason[:2000], finished_at=timezone.now()
    )


def _extract_one(run: ExtractionRun, endpoint: EndpointConfig, text: str) -> None:
    usage = Usage()
    definition = Definition.from_entry(run.schema_name, run.definition)
    try:
        extraction = extract_fields(
            schema_name=definition.name,
            schema=definition.schema,
            text=text,
            endpoint=endpoint,
            description=definition.description,
            examples=definition.examples,
            usage=usage,
        )
    except ToolFailed as exc:
        run.results.append({"fields": None, "error": exc.user_message, "attempts": 0})
    else:
        run.results.append(
            {"fields": extraction.fields, "error": "", "attempts": extraction.attempts}
        )
    _save_progress(run, usage, endpoint)


def extraction_run_process(*, run_id: int) -> ExtractionRun:
    """Extract every text not done yet, saving after each; safe to run twice."""
    run = ExtractionRun.objects.get(pk=run_id)
    if run.finished:
        return run
    try:
        endpoint = route_choose().endpoint
    except ModelError as exc:
        extraction_run_fail(run_id=run.pk, reason=exc.user_message)
        run.refresh_from_db()
        return run
    run.status = ExtractionRun.Status.RUNNING
    run.endpoint_name = endpoint.name
    run.save(update_fields=["status", "endpoint_name"])
    for text in run.texts[len(run.results) :]:
        _extract_one(run, endpoint, text)
    run.status = ExtractionRun.Status.DONE
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "finished_at"])
    logger.info(
        "extraction run %s: %s texts, %s failed, %s tokens in, %s out on %s",
        run.pk,
        run.total,
        run.failed,
        run.tokens_in,
        run.tokens_out,
        endpoint.name,
    )
    return run
