"""The whole local path on a tiny model the test builds (random weights, no download): a training
export, LoRA fine-tuning with SFT and with DPO, the endpoint registered with its lineage, and a
chat turn answered by it through the registry's local Hugging Face provider."""

from __future__ import annotations

from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User

from chatbot.agent.turn import turn_run
from chatbot.chat import services as chat
from chatbot.models import AuditEntry, FineTuneJob, ModelEndpoint, Turn
from evaluation.finetune import services
from tests.evaluation.finetune.support import dpo_export, sft_export

pytestmark = pytest.mark.django_db(transaction=True)

TINY = {
    "max_steps": 4,
    "batch_size": 2,
    "learning_rate": 1e-2,
    "lora_r": 4,
    "lora_alpha": 8,
    "max_length": 256,
}


def _train(export_id: int, method: str, base: Path, user: User, **hp: object) -> FineTuneJob:
    from chatbot.models import Export

    job, created = services.finetune_create(
        export=Export.objects.get(pk=export_id),
        method=method,
        base_model=str(base),
        hyperparameters={**TINY, **hp},
        user=user,
        queue=False,
    )
    assert created
    services.finetune_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == FineTuneJob.Status.DONE, job.error + job.log
    return job


async def _ask(user: User, text: str, model: str) -> Turn:
    conversation = await sync_to_async(chat.conversation_create)(owner=user)
    turn = await sync_to_async(chat.turn_create)(conversation=conversation, user_text=text)

    async def emit(piece: str) -> None:
        pass

    await turn_run(turn_id=turn.pk, emit=emit, requested_model=model)
    return await Turn.objects.select_related("endpoint").aget(pk=turn.pk)


def test_it_fine_tunes_with_sft_and_dpo_registers_endpoints_and_answers_a_turn(
    alice: User, rita: User, adam: User, tiny_base: Path, finetune_dirs: Path
) -> None:
    sft = _train(sft_export(alice, rita).pk, "sft", tiny_base, adam)
    dpo = _train(dpo_export(alice, rita).pk, "dpo", tiny_base, adam, merge=False)

    for job in (sft, dpo):
        assert job.steps_done == job.steps_total == 4
        trains = [p["train"] for p in job.losses if p["train"] is not None]
        checks = [p["validation"] for p in job.losses if p["validation"] is not None]
        assert len(trains) == 4 and all(loss > 0 for loss in trains)
        assert checks, "a validation split was held out and evaluated"
        endpoint = job.endpoint
        assert endpoint is not None and endpoint.provider == ModelEndpoint.Provider.LOCAL_HF
        assert not endpoint.is_default
        assert Path(endpoint.model_id).is_relative_to(finetune_dirs)
        lineage = job.lineage
        assert lineage["export"]["id"] == job.export_id
        assert len(lineage["export"]["sha256"]) == 64
        assert lineage["method"] == job.method and lineage["base_model"] == str(tiny_base.resolve())
        assert lineage["started_by"] == "adam"
        assert lineage["hyperparameters"]["max_steps"] == 4
        assert lineage["losses"]["last_train"] == trains[-1]
        assert lineage["rows"]["train"] + lineage["rows"]["validation"] == job.export.rows_written
        assert "training loss" in job.log and "validation loss" in job.log
    assert sft.endpoint is not None and dpo.endpoint is not None
    assert (Path(sft.endpoint.model_id) / "config.json").is_file()  # merged weights
    assert (Path(dpo.endpoint.model_id) / "adapter_config.json").is_file()  # the adapter alone
    assert AuditEntry.objects.filter(action="finetune.start").count() == 2

    for job in (sft, dpo):
        assert job.endpoint is not None
        turn = await_turn(adam, job.endpoint.name)
        assert turn.status == Turn.Status.DONE, turn.error
        assert turn.endpoint_id == job.endpoint_id
        assert turn.answer.strip()
        assert turn.tokens_out > 0


def await_turn(user: User, model: str) -> Turn:
    from asgiref.sync import async_to_sync

    return async_to_sync(_ask)(user, "How do I reset a forgotten password?", model)


def test_it_finds_the_same_job_when_the_same_request_comes_twice(
    alice: User, rita: User, adam: User, tiny_base: Path
) -> None:
    job = _train(sft_export(alice, rita).pk, "sft", tiny_base, adam)
    again, created = services.finetune_create(
        export=job.export,
        method="sft",
        base_model=str(tiny_base),
        hyperparameters=TINY,
        user=adam,
        queue=False,
    )
    assert not created and again.pk == job.pk
    services.finetune_run(job_id=job.pk)  # a redelivered task: finished, left as it is
    assert FineTuneJob.objects.count() == 1
    assert ModelEndpoint.objects.filter(options__finetune_job=job.pk).count() == 1


def test_it_refuses_a_method_that_does_not_fit_the_export(
    alice: User, rita: User, adam: User, tiny_base: Path
) -> None:
    export = sft_export(alice, rita)
    with pytest.raises(services.InvalidJob, match="use sft"):
        services.finetune_create(
            export=export, method="dpo", base_model=str(tiny_base), user=adam, queue=False
        )
    with pytest.raises(services.InvalidJob, match="model folder"):
        services.finetune_create(
            export=export, method="sft", base_model="/nowhere/model", user=adam, queue=False
        )


def test_it_stops_a_cancelled_job_at_its_next_step(
    alice: User, rita: User, adam: User, tiny_base: Path
) -> None:
    export = sft_export(alice, rita)
    job, _ = services.finetune_create(
        export=export, method="sft", base_model=str(tiny_base), hyperparameters={**TINY, "max_steps": 50},
        user=adam, queue=False,
    )  # fmt: skip
    FineTuneJob.objects.filter(pk=job.pk).update(
        cancel_requested=True, status=FineTuneJob.Status.RUNNING
    )
    # A worker that picks the job up after the click: it never trains.
    FineTuneJob.objects.filter(pk=job.pk).update(status=FineTuneJob.Status.QUEUED)
    services.finetune_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == FineTuneJob.Status.CANCELLED and job.endpoint is None
