"""Fine-tuning jobs: start one from a training export, run it (in a Celery task or the command),
cancel it, and register what it made in the catalogue with its lineage.

Safe to repeat: the same request (export, method, backend, base model, hyperparameters) finds the
job it made before instead of making another; a finished job is left as it is; an unfinished one
is trained again from the start (a hosted one keeps polling the provider's job it created); the
endpoint it registers is found by name, never made twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from chatbot.jobs import job_submit_on_commit
from chatbot.llm.local_hf import model_directory_problem
from chatbot.models import Export, FineTuneJob, ModelEndpoint
from chatbot.telemetry.audit import audit_record
from evaluation.exports.selectors import export_readable
from evaluation.exports.services import export_file
from evaluation.finetune.backends import Backend, BackendError, Cancelled, Reporter, backend_for
from evaluation.finetune.data import DataError, export_summary, rows_read

logger = logging.getLogger(__name__)

# Small on purpose: LoRA on a few hundred reviewed rows. The admin changes any of them.
DEFAULTS: dict[str, Any] = {
    "epochs": 1,
    "max_steps": 0,  # 0: the epochs decide
    "learning_rate": 2e-4,
    "batch_size": 4,
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.05,
    "max_length": 1024,
    "beta": 0.1,  # DPO only: how far the model may move from the base
    "validation_share": 0.1,
    "seed": 42,
    "merge": True,  # local only: fold the adapter into the weights (else serve the adapter)
}
EXPORT_KIND_FOR = {FineTuneJob.Method.SFT: Export.Kind.SFT, FineTuneJob.Method.DPO: Export.Kind.DPO}
MAX_OUTPUT_TOKENS = 256


class InvalidJob(ValueError):
    """A job that cannot be started; the message is shown to the admin as it is."""


def hyperparameters_clean(raw: dict[str, Any] | None) -> dict[str, Any]:
    values = {**DEFAULTS, **{k: v for k, v in (raw or {}).items() if v not in (None, "")}}
    unknown = set(values) - set(DEFAULTS)
    if unknown:
        raise InvalidJob(f"Unknown hyperparameters: {', '.join(sorted(unknown))}.")
    try:
        for name in (
            "epochs",
            "max_steps",
            "batch_size",
            "lora_r",
            "lora_alpha",
            "max_length",
            "seed",
        ):
            values[name] = int(values[name])
        for name in ("learning_rate", "lora_dropout", "beta", "validation_share"):
            values[name] = float(values[name])
    except (TypeError, ValueError):
        raise InvalidJob("Hyperparameters must be numbers.") from None
    values["merge"] = bool(values["merge"])
    if values["epochs"] < 1 or values["max_steps"] < 0 or values["batch_size"] < 1:
        raise InvalidJob("Epochs and batch size start at 1; max steps at 0 (none).")
    if not 0 < values["learning_rate"] < 1 or not 0 <= values["validation_share"] < 0.5:
        raise InvalidJob("The learning rate lies between 0 and 1; the validation share below 0.5.")
    if values["lora_r"] < 1 or values["lora_alpha"] < 1 or values["max_length"] < 16:
        raise InvalidJob("LoRA rank and alpha start at 1; the maximum length at 16 tokens.")
    return values


def _fingerprint(**parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _check_request(
    *, export: Export, method: str, backend: str, base_model: str, hosted_via: ModelEndpoint | None
) -> None:
    if method not in FineTuneJob.Method.values:
        raise InvalidJob(f"Unknown method {method!r}; choose sft or dpo.")
    if backend not in FineTuneJob.Backend.values:
        raise InvalidJob(f"Unknown backend {backend!r}; choose local or hosted.")
    if export.status != Export.Status.DONE or not export.rows_written:
        raise InvalidJob(f"Export {export.pk} has no finished rows to train on.")
    if export.kind != EXPORT_KIND_FOR[FineTuneJob.Method(method)]:
        raise InvalidJob(
            f"Export {export.pk} holds {export.get_kind_display().lower()}: "
            f"use {'dpo' if export.kind == Export.Kind.DPO else 'sft'} with it."
        )
    if not base_model.strip():
        raise InvalidJob("Name the base model.")
    if backend == FineTuneJob.Backend.LOCAL:
        problem = model_directory_problem(Path(base_model).expanduser())
        if problem:
            raise InvalidJob(f"The base model must be a Hugging Face model folder: {problem}")
    elif hosted_via is None or hosted_via.provider != ModelEndpoint.Provider.OPENAI:
        raise InvalidJob(
            "A hosted job runs through an OpenAI-compatible catalogue entry: choose one."
        )


def finetune_create(
    *,
    export: Export,
    method: str,
    base_model: str,
    backend: str = FineTuneJob.Backend.LOCAL,
    hosted_via: ModelEndpoint | None = None,
    hyperparameters: dict[str, Any] | None = None,
    user: User | None = None,
    queue: bool = True,
) -> tuple[FineTuneJob, bool]:
    """Start a job, or find the one this same request started before. Returns (job, created)."""
    _check_request(
        export=export, method=method, backend=backend, base_model=base_model, hosted_via=hosted_via
    )
    if user is not None and not export_readable(export=export, user=user):
        raise InvalidJob(f"Export {export.pk} holds passages from collections not shared with you.")
    hp = hyperparameters_clean(hyperparameters)
    base = base_model.strip()
    if backend == FineTuneJob.Backend.LOCAL:
        base = str(Path(base).expanduser().resolve())
    via = hosted_via if backend == FineTuneJob.Backend.HOSTED else None
    digest = _fingerprint(
        export=export.pk,
        method=method,
        backend=backend,
        base=base,
        hp=hp,
        via=via.pk if via else None,
    )
    live = FineTuneJob.objects.exclude(
        status__in=[FineTuneJob.Status.FAILED, FineTuneJob.Status.CANCELLED]
    )
    found = live.filter(fingerprint=digest).first()
    if found is not None:
        return found, False
    try:
        with transaction.atomic():
            job = FineTuneJob.objects.create(
                export=export, method=method, backend=backend, base_model=base, hosted_via=via,
                hyperparameters=hp, fingerprint=digest, created_by=user,
            )  # fmt: skip
            audit_record(
                "finetune.start",
                target=job,
                details={"export": export.pk, "method": method, "backend": backend, "base": base},
                actor=user,
            )
    except IntegrityError:  # the same request, a moment earlier, from another tab
        return live.get(fingerprint=digest), False
    if queue:
        from evaluation.finetune.tasks import finetune_run_task

        job_submit_on_commit(finetune_run_task, job.pk)
    return job, True


def finetune_cancel(*, job: FineTuneJob, user: User | None = None) -> bool:
    """Ask a queued or running job to stop; the trainer stops at its next step. False when the
    job had already finished."""
    if job.finished:
        return False
    FineTuneJob.objects.filter(pk=job.pk).update(cancel_requested=True)
    # Nobody has picked a queued job up: it is cancelled now (the task will find it so).
    FineTuneJob.objects.filter(pk=job.pk, status=FineTuneJob.Status.QUEUED).update(
        status=FineTuneJob.Status.CANCELLED, finished_at=timezone.now()
    )
    job.refresh_from_db()
    audit_record("finetune.cancel", target=job, actor=user)
    return True


def _endpoint_name(job: FineTuneJob) -> str:
    base = Path(job.base_model).name if job.backend == FineTuneJob.Backend.LOCAL else job.base_model
    return slugify(f"ft-{job.pk}-{job.method}-{base}")[:80].strip("-")


def _register(job: FineTuneJob, trained: Any) -> ModelEndpoint:
    """The catalogue entry for the result: disabled for nothing, default for nobody (promotion
    is gated), found by name on a rerun."""
    via = job.hosted_via
    local = job.backend == FineTuneJob.Backend.LOCAL
    fields: dict[str, Any] = {
        "provider": trained.provider,
        "base_url": trained.base_url,
        "model_id": trained.model_id,
        "api_key_name": trained.api_key_name,
        "style": ModelEndpoint.Style.CHAT,
        "max_output_tokens": MAX_OUTPUT_TOKENS,
        "region": "local" if local or via is None else via.region,
        # A small local model cannot choose tools reliably; a hosted one does what its base did.
        "tool_calling": ModelEndpoint.ToolCalling.NONE
        if local or via is None
        else via.tool_calling,
        "personal_data_allowed": True if local or via is None else via.personal_data_allowed,
        "options": {"finetune_job": job.pk},
    }
    if via is not None and not local:
        fields["price_input_per_mtok"] = via.price_input_per_mtok
        fields["price_output_per_mtok"] = via.price_output_per_mtok
    endpoint, _ = ModelEndpoint.objects.update_or_create(name=_endpoint_name(job), defaults=fields)
    return endpoint


def _lineage(job: FineTuneJob, rows: Any, trained: Any) -> dict[str, Any]:
    parent = (
        ModelEndpoint.objects.filter(
            provider=ModelEndpoint.Provider.LOCAL_HF, model_id=job.base_model
        ).first()
        if job.backend == FineTuneJob.Backend.LOCAL
        else None
    )
    trains = [p["train"] for p in job.losses if p.get("train") is not None]
    checks = [p["validation"] for p in job.losses if p.get("validation") is not None]
    return {
        "export": export_summary(job.export, rows),
        "kb_versions": rows.kb_versions,
        "rows": {"train": len(rows.train), "validation": len(rows.validation)},
        "base_model": job.base_model,
        "base_endpoint": parent.name if parent else None,
        "method": job.method,
        "backend": job.backend,
        "hyperparameters": job.hyperparameters,
        "started_by": job.created_by.get_username() if job.created_by else None,
        "losses": {
            "first_train": trains[0] if trains else None,
            "last_train": trains[-1] if trains else None,
            "last_validation": checks[-1] if checks else None,
        },
        "result": {"provider": trained.provider, "model_id": trained.model_id, **trained.details},
    }


def _finish(job: FineTuneJob, **fields: Any) -> FineTuneJob:
    fields.setdefault("finished_at", timezone.now())
    for name, value in fields.items():
        setattr(job, name, value)
    FineTuneJob.objects.filter(pk=job.pk).update(
        log=job.log,
        steps_done=job.steps_done,
        steps_total=job.steps_total,
        losses=job.losses,
        **fields,
    )
    return job


def finetune_run(*, job_id: int, backend: Backend | None = None) -> FineTuneJob | None:
    """Train one job to its end and register the result. A finished job is returned as it is."""
    job = (
        FineTuneJob.objects.select_related("export", "hosted_via", "created_by")
        .filter(pk=job_id)
        .first()
    )
    if job is None or job.finished:
        return job
    if job.cancel_requested:
        return _finish(job, status=FineTuneJob.Status.CANCELLED)
    job.losses, job.steps_done, job.log = [], 0, ""
    FineTuneJob.objects.filter(pk=job.pk).update(
        status=FineTuneJob.Status.RUNNING,
        started_at=timezone.now(),
        error="",
        losses=[],
        steps_done=0,
        log="",
    )
    job.status = FineTuneJob.Status.RUNNING
    reporter = Reporter(job)
    try:
        path = export_file(job.export)
        if path is None:
            raise DataError(f"Export {job.export.pk}'s file is gone; run the export again.")
        hp = job.hyperparameters
        rows = rows_read(
            path=path, method=job.method, validation_share=hp["validation_share"], seed=hp["seed"]
        )
        trained = (backend or backend_for(job)).run(job, rows, reporter)
        with transaction.atomic():
            endpoint = _register(job, trained)
            job.endpoint = endpoint
            lineage = _lineage(job, rows, trained)
            job = _finish(job, status=FineTuneJob.Status.DONE, endpoint=endpoint, lineage=lineage,
                          output_dir=trained.model_id if trained.provider == ModelEndpoint.Provider.LOCAL_HF else "")  # fmt: skip
    except Cancelled:
        reporter.log("cancelled by an admin")
        return _finish(job, status=FineTuneJob.Status.CANCELLED)
    except (DataError, BackendError) as exc:
        reporter.log(f"failed: {exc}")
        return _finish(job, status=FineTuneJob.Status.FAILED, error=str(exc))
    except Exception as exc:
        logger.exception("fine-tuning job %s failed", job_id)
        reporter.log(f"failed: {type(exc).__name__}: {exc}")
        return _finish(
            job,
            status=FineTuneJob.Status.FAILED,
            error=f"Training failed ({type(exc).__name__}: {exc}).",
        )
    return job
