"""The hosted backend: an OpenAI-compatible fine-tuning API, reached through a catalogue entry
(its base URL and API key). Upload the rows, create the job, poll it (its metric events carry the
losses), and read the fine-tuned model's id when it succeeds.

The provider's job id is saved on our row as soon as it exists: a redelivered task polls the same
job instead of paying for a second one.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from django.conf import settings

from chatbot.models import FineTuneJob, ModelEndpoint
from evaluation.finetune.backends import BackendError, Cancelled, Reporter, Trained
from evaluation.finetune.data import Rows, hosted_line

OPENAI_URL = "https://api.openai.com/v1"
POLL_S = 10.0  # how often the provider is asked; jobs take minutes to hours
TIMEOUT_S = 60.0


def _check(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code >= 400:
        try:
            message = response.json().get("error", {}).get("message") or response.text
        except ValueError:
            message = response.text
        raise BackendError(
            f"The fine-tuning API refused to {what} ({response.status_code}): {message[:300]}"
        )
    body: dict[str, Any] = response.json()
    return body


class HostedBackend:
    def __init__(self, poll_s: float = POLL_S) -> None:
        self.poll_s = poll_s

    def _client(self, via: ModelEndpoint) -> httpx.Client:
        key = settings.MODEL_API_KEYS.get(via.api_key_name, "") if via.api_key_name else ""
        if via.api_key_name and not key:
            raise BackendError(
                f"The API key of “{via.name}” is missing: set {via.api_key_name} on the workers."
            )
        headers = {"Authorization": f"Bearer {key or 'not-needed'}"}
        base = (via.base_url or OPENAI_URL).rstrip("/")
        return httpx.Client(base_url=base, headers=headers, timeout=TIMEOUT_S)

    def _upload(
        self, client: httpx.Client, job: FineTuneJob, rows: list[dict[str, Any]], part: str
    ) -> str:
        body = "".join(hosted_line(job.method, r) + "\n" for r in rows).encode()
        name = f"finetune-{job.pk}-{part}.jsonl"
        response = client.post(
            "/files",
            data={"purpose": "fine-tune"},
            files={"file": (name, body, "application/jsonl")},
        )
        return str(_check(response, f"take the {part} file")["id"])

    def _create(
        self, client: httpx.Client, job: FineTuneJob, rows: Rows, reporter: Reporter
    ) -> str:
        hp = job.hyperparameters
        training = self._upload(client, job, rows.train, "training")
        reporter.log(f"uploaded {len(rows.train)} training rows as {training}")
        method = "supervised" if job.method == FineTuneJob.Method.SFT else "dpo"
        settings_: dict[str, Any] = {
            "n_epochs": int(hp["epochs"]),
            "batch_size": int(hp["batch_size"]),
        }
        if method == "dpo":
            settings_["beta"] = float(hp["beta"])
        body: dict[str, Any] = {
            "model": job.base_model,
            "training_file": training,
            "suffix": f"support-{job.pk}",
            "seed": int(hp["seed"]),
            "method": {"type": method, method: {"hyperparameters": settings_}},
        }
        if rows.validation:
            body["validation_file"] = self._upload(client, job, rows.validation, "validation")
            reporter.log(f"uploaded {len(rows.validation)} validation rows")
        created = _check(client.post("/fine_tuning/jobs", json=body), "create the job")
        job_id = str(created["id"])
        FineTuneJob.objects.filter(pk=job.pk).update(hosted_job_id=job_id)
        job.hosted_job_id = job_id
        reporter.log(f"created hosted job {job_id}")
        return job_id

    def _events(
        self, client: httpx.Client, job_id: str, seen: set[str], reporter: Reporter
    ) -> None:
        listed = _check(
            client.get(f"/fine_tuning/jobs/{job_id}/events", params={"limit": 100}), "list events"
        )
        for event in reversed(listed.get("data") or []):  # the API lists the newest first
            event_id = str(event.get("id"))
            if event_id in seen:
                continue
            seen.add(event_id)
            data = event.get("data") or {}
            if event.get("type") == "metrics" and "step" in data:
                step = int(data["step"])
                reporter.loss(step, train=data.get("train_loss"), validation=data.get("valid_loss"))
                if data.get("total_steps"):
                    reporter.progress(step, int(data["total_steps"]))
            elif event.get("message"):
                reporter.log(str(event["message"]))

    def run(self, job: FineTuneJob, rows: Rows, reporter: Reporter) -> Trained:
        via = job.hosted_via
        if via is None:
            raise BackendError("Choose the catalogue entry whose API the hosted job runs on.")
        seen: set[str] = set()
        with self._client(via) as client:
            job_id = job.hosted_job_id or self._create(client, job, rows, reporter)
            while True:
                if reporter.cancelled():
                    client.post(f"/fine_tuning/jobs/{job_id}/cancel")
                    reporter.log(f"asked the provider to cancel {job_id}")
                    raise Cancelled
                state = _check(client.get(f"/fine_tuning/jobs/{job_id}"), "report the job")
                self._events(client, job_id, seen, reporter)
                status = state.get("status")
                if status == "succeeded" and state.get("fine_tuned_model"):
                    model = str(state["fine_tuned_model"])
                    reporter.progress(job.steps_total or 1, job.steps_total or 1)
                    reporter.log(f"the provider finished: {model}")
                    return Trained(
                        provider=ModelEndpoint.Provider.OPENAI,
                        model_id=model,
                        base_url=via.base_url,
                        api_key_name=via.api_key_name,
                        details={
                            "hosted_job": job_id,
                            "trained_tokens": state.get("trained_tokens"),
                        },
                    )
                if status in {"failed", "cancelled"}:
                    error = (state.get("error") or {}).get("message") or status
                    if status == "cancelled":
                        raise Cancelled
                    raise BackendError(f"The provider's job {job_id} failed: {error}")
                time.sleep(self.poll_s)
