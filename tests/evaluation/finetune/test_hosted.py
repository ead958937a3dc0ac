"""The hosted backend against a fake OpenAI-compatible fine-tuning API (a real HTTP server on
loopback): rows uploaded in the provider's format, the job created and polled, losses read from
its metric events, the fine-tuned model registered as an OpenAI-compatible endpoint, and a chat
turn answered by it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.db import connection

from chatbot.models import FineTuneJob, ModelEndpoint, Turn
from evaluation.finetune import services
from evaluation.finetune.hosted import HostedBackend
from tests.evaluation.finetune.support import dpo_export
from tests.evaluation.finetune.test_local import _ask
from tests.fake_peers import fake_peer, sse

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "ft:base-mini:support-1"


def _provider(done_after: int = 3) -> Any:
    """The fake fine-tuning API; its job succeeds on the `done_after`-th poll."""
    polls = {"n": 0}

    def handler(path: str, body: dict[str, Any]) -> tuple[int, list[bytes], str]:
        def ok(payload: dict[str, Any]) -> tuple[int, list[bytes], str]:
            return 200, [json.dumps(payload).encode()], "application/json"

        if path == "/v1/files":
            return ok({"id": f"file-{polls['n']}", "object": "file"})
        if path == "/v1/fine_tuning/jobs":
            return ok({"id": "ftjob-1", "status": "queued"})
        if path.startswith("/v1/fine_tuning/jobs/ftjob-1/events"):
            events = [
                {"id": f"ev-{s}", "type": "metrics", "message": f"Step {s}/2",
                 "data": {"step": s, "train_loss": 1.0 / s, "valid_loss": 1.5 / s, "total_steps": 2}}
                for s in range(1, min(polls["n"], 2) + 1)
            ]  # fmt: skip
            return ok({"data": list(reversed(events)), "has_more": False})
        if path == "/v1/fine_tuning/jobs/ftjob-1":
            polls["n"] += 1
            done = polls["n"] >= done_after
            return ok({
                "id": "ftjob-1",
                "status": "succeeded" if done else "running",
                "fine_tuned_model": MODEL if done else None,
            })  # fmt: skip
        if path == "/v1/chat/completions":
            head = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": MODEL}
            chunks: list[tuple[str | None, dict[str, Any] | str]] = [
                (None, {**head, "choices": [{"index": 0, "delta": {"content": "Use the reset link."}, "finish_reason": None}]}),
                (None, {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
                (None, "[DONE]"),
            ]  # fmt: skip
            return 200, sse(chunks), "text/event-stream"
        return 404, [b'{"error": {"message": "no such route"}}'], "application/json"

    return handler


def test_it_fine_tunes_on_a_hosted_api_and_a_turn_uses_the_registered_model(
    alice: User, rita: User, adam: User
) -> None:
    export = dpo_export(alice, rita)
    with fake_peer(_provider()) as (url, seen):
        account = ModelEndpoint.objects.create(
            name="hosted-account", provider=ModelEndpoint.Provider.OPENAI, base_url=f"{url}/v1",
            model_id="base-mini", region="eu", personal_data_allowed=False,
        )  # fmt: skip
        job, _ = services.finetune_create(
            export=export, method="dpo", base_model="base-mini", backend="hosted",
            hosted_via=account, hyperparameters={"epochs": 2}, user=adam, queue=False,
        )  # fmt: skip
        services.finetune_run(job_id=job.pk, backend=HostedBackend(poll_s=0.01))
        job.refresh_from_db()
        assert job.status == FineTuneJob.Status.DONE, job.error + job.log
        assert job.endpoint is not None
        turn = async_to_sync(_ask)(adam, "How do I reset a forgotten password?", job.endpoint.name)

    uploads = [r for r in seen if r["path"] == "/v1/files"]
    assert (
        b'"preferred_output"' in uploads[0]["raw"]
        and b'"non_preferred_output"' in uploads[0]["raw"]
    )
    created = next(r for r in seen if r["path"] == "/v1/fine_tuning/jobs")["body"]
    assert created["model"] == "base-mini" and created["method"]["type"] == "dpo"
    assert created["method"]["dpo"]["hyperparameters"]["n_epochs"] == 2
    assert created["training_file"] and created["validation_file"]
    assert job.hosted_job_id == "ftjob-1"
    assert job.losses == [
        {"step": 1, "train": 1.0, "validation": 1.5},
        {"step": 2, "train": 0.5, "validation": 0.75},
    ]
    endpoint = job.endpoint
    assert endpoint is not None
    assert endpoint.provider == ModelEndpoint.Provider.OPENAI and endpoint.model_id == MODEL
    assert endpoint.base_url == account.base_url and endpoint.region == "eu"
    assert endpoint.personal_data_allowed is False  # as the account it runs on
    assert job.lineage["backend"] == "hosted" and job.lineage["result"]["hosted_job"] == "ftjob-1"
    assert turn.status == Turn.Status.DONE and turn.endpoint_id == endpoint.pk
    assert turn.answer == "Use the reset link."
    chat = next(r for r in seen if r["path"] == "/v1/chat/completions")["body"]
    assert chat["model"] == MODEL


def test_it_refuses_a_hosted_job_without_an_openai_compatible_account(
    alice: User, rita: User, adam: User
) -> None:
    export = dpo_export(alice, rita)
    with pytest.raises(services.InvalidJob, match="OpenAI-compatible"):
        services.finetune_create(
            export=export,
            method="dpo",
            base_model="base-mini",
            backend="hosted",
            user=adam,
            queue=False,
        )


def test_it_asks_the_provider_to_cancel_a_hosted_job_an_admin_cancelled(
    alice: User, rita: User, adam: User
) -> None:
    export = dpo_export(alice, rita)
    ours: dict[str, int] = {}

    def provider(path: str, body: dict[str, Any]) -> tuple[int, list[bytes], str]:
        def ok(payload: dict[str, Any]) -> tuple[int, list[bytes], str]:
            return 200, [json.dumps(payload).encode()], "application/json"

        if path == "/v1/files":
            return ok({"id": "file-1", "object": "file"})
        if path == "/v1/fine_tuning/jobs":
            return ok({"id": "ftjob-9", "status": "queued"})
        if path.startswith("/v1/fine_tuning/jobs/ftjob-9/events"):
            return ok({"data": [], "has_more": False})
        if path == "/v1/fine_tuning/jobs/ftjob-9/cancel":
            return ok({"id": "ftjob-9", "status": "cancelled"})
        if path == "/v1/fine_tuning/jobs/ftjob-9":
            # The provider is training when the admin clicks Cancel on the job's page.
            if not FineTuneJob.objects.filter(pk=ours["job"], cancel_requested=True).exists():
                services.finetune_cancel(job=FineTuneJob.objects.get(pk=ours["job"]), user=adam)
            connection.close()  # this request's thread is done with the database
            return ok({"id": "ftjob-9", "status": "running", "fine_tuned_model": None})
        return 404, [b'{"error": {"message": "no such route"}}'], "application/json"

    with fake_peer(provider) as (url, seen):
        account = ModelEndpoint.objects.create(
            name="hosted-account", provider=ModelEndpoint.Provider.OPENAI, base_url=f"{url}/v1",
            model_id="base-mini",
        )  # fmt: skip
        job, _ = services.finetune_create(
            export=export, method="dpo", base_model="base-mini", backend="hosted",
            hosted_via=account, user=adam, queue=False,
        )  # fmt: skip
        ours["job"] = job.pk
        services.finetune_run(job_id=job.pk, backend=HostedBackend(poll_s=0.01))
    job.refresh_from_db()

    assert job.status == FineTuneJob.Status.CANCELLED, job.error + job.log
    assert job.hosted_job_id == "ftjob-9" and job.endpoint is None
    cancels = [r for r in seen if r["path"] == "/v1/fine_tuning/jobs/ftjob-9/cancel"]
    assert len(cancels) == 1 and cancels[0]["method"] == "POST"
    assert seen.index(cancels[0]) == len(seen) - 1, "nothing is asked of the provider after"
    assert "asked the provider to cancel ftjob-9" in job.log
    assert ModelEndpoint.objects.filter(provider="openai").count() == 1, "only the account"
