"""One interface for every fine-tuning backend: `run(job, rows, reporter) -> Trained`.

A backend trains, reports progress, log lines and losses through the `Reporter` (which writes
them to the job's row, at most twice a second), stops when the reporter says the admin cancelled,
and says how to reach the result: a provider and a model id the catalogue can serve.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from chatbot.models import FineTuneJob
from evaluation.finetune.data import Rows

PROGRESS_EVERY_S = 0.5  # at most two progress writes (and cancel checks) a second
LOG_LIMIT = 60_000  # characters of log kept on the row: the newest


class Cancelled(Exception):
    """The admin cancelled the job; the backend stopped."""


class BackendError(Exception):
    """Training failed for a reason the admin can act on; the message is shown as it is."""


@dataclass
class Trained:
    """Where the result lives, as a catalogue entry needs it."""

    provider: str
    model_id: str
    base_url: str = ""
    api_key_name: str = ""
    details: dict[str, Any] = field(default_factory=dict)


class Reporter:
    """Progress, log and losses of one job, written to its row; and whether it was cancelled."""

    def __init__(self, job: FineTuneJob) -> None:
        self.job = job
        self._last_write = 0.0
        self._last_check = 0.0
        self._cancelled = False

    def log(self, line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.job.log = (self.job.log + f"{stamp} {line}\n")[-LOG_LIMIT:]
        self.flush()

    def progress(self, done: int, total: int) -> None:
        self.job.steps_done, self.job.steps_total = done, max(total, done)
        self.flush()

    def loss(
        self, step: int, *, train: float | None = None, validation: float | None = None
    ) -> None:
        points = self.job.losses
        point = next((p for p in points if p["step"] == step), None)
        if point is None:
            point = {"step": step, "train": None, "validation": None}
            points.append(point)
            points.sort(key=lambda p: p["step"])
        if train is not None:
            point["train"] = round(float(train), 6)
        if validation is not None:
            point["validation"] = round(float(validation), 6)
        self.flush()

    def flush(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_write < PROGRESS_EVERY_S:
            return
        self._last_write = now
        FineTuneJob.objects.filter(pk=self.job.pk).update(
            log=self.job.log,
            steps_done=self.job.steps_done,
            steps_total=self.job.steps_total,
            losses=self.job.losses,
        )

    def cancelled(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now - self._last_check >= PROGRESS_EVERY_S:
            self._last_check = now
            self._cancelled = FineTuneJob.objects.filter(
                pk=self.job.pk, cancel_requested=True
            ).exists()
        return self._cancelled


class Backend(Protocol):
    def run(self, job: FineTuneJob, rows: Rows, reporter: Reporter) -> Trained: ...


def backend_for(job: FineTuneJob) -> Backend:
    if job.backend == FineTuneJob.Backend.HOSTED:
        from evaluation.finetune.hosted import HostedBackend

        return HostedBackend()
    from evaluation.finetune.local import LocalBackend

    return LocalBackend()
