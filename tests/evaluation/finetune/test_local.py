"""The whole local path on a tiny model the test builds (random weights, no download): a training
export, LoRA fine-tuning with SFT and with DPO, the endpoint registered with its lineage, and a
chat turn answered by it through the registry's local Hugging Face provider."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import Client

from chatbot.agent.turn import turn_run
from chatbot.chat import services as chat
from chatbot.models import AuditEntry, FineTuneJob, ModelEndpoint, Review, Turn
from evaluation.exports.services import export_file
from evaluation.finetune import services
from evaluation.finetune.backends import Reporter, Trained
from evaluation.finetune.data import Rows
from evaluation.finetune.local import LocalBackend, output_path
from tests.evaluation.exports.support import read_jsonl
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
    alice: User,
    rita: User,
    adam: User,
    tiny_base: Path,
    finetune_dirs: Path,
    client_as: Callable[[User], Client],
) -> None:
    sft = _train(sft_export(alice, rita).pk, "sft", tiny_base, adam)
    newest_sft_review = Review.objects.latest("created_at").created_at.isoformat()
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
    # What each export was made of: reviews and thumbs (exports read no dataset).
    assert sft.lineage["export"]["built_from"] == {
        "turns_from": None, "turns_to": None,
        "sources": {"approved": 4, "corrected": 2},
        "reviews": 6, "newest_review_at": newest_sft_review,
        "thumbs": 0, "newest_thumb_at": None,
        "review_ids_sha256": sft.lineage["export"]["built_from"]["review_ids_sha256"],
    }  # fmt: skip
    dpo_from = dpo.lineage["export"]["built_from"]
    assert dpo_from["sources"] == {"correction": 6, "thumbs": 1}
    # Corrections of any date pair up: the two the SFT export's reviewers made come first, and
    # the same pairs made again later are dropped as duplicates; the lineage names the ones used.
    path = export_file(dpo.export)
    assert path is not None
    used = {r["metadata"]["review_id"] for r in read_jsonl(path)} - {None}
    assert dpo_from["reviews"] == len(used) == 6 and dpo_from["thumbs"] == 1  # the thumb down
    newest = Review.objects.filter(pk__in=used).latest("created_at").created_at
    assert dpo_from["newest_review_at"] == newest.isoformat()
    assert dpo_from["review_ids_sha256"] != sft.lineage["export"]["built_from"]["review_ids_sha256"]
    page = client_as(adam).get(f"/review/finetune/{sft.pk}/").content.decode()
    assert "rows by source: approved 4, corrected 2 · 6 reviews (newest " in page
    assert "no dataset: an export reads the reviews and thumbs themselves" in page

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


def test_it_never_trains_a_job_cancelled_before_a_worker_picked_it_up(
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


class _AdminCancelsAfterTheFirstStep(LocalBackend):
    """The real local backend, watched by an admin who clicks Cancel (`finetune_cancel`, what the
    job page's button calls) as soon as the progress bar shows the first step. The trainer's
    callback reports that step (`Report.on_step_end` -> `Reporter.progress`) and then asks the
    row whether the job was cancelled: that check is what stops training."""

    def run(self, job: FineTuneJob, rows: Rows, reporter: Reporter) -> Trained:
        class Watched(Reporter):
            def progress(self, done: int, total: int) -> None:
                super().progress(done, total)
                if (
                    done >= 1
                    and not FineTuneJob.objects.filter(pk=job.pk, cancel_requested=True).exists()
                ):
                    services.finetune_cancel(
                        job=FineTuneJob.objects.get(pk=job.pk), user=job.created_by
                    )

        return super().run(job, rows, Watched(job))


def test_it_stops_a_job_cancelled_while_it_trains_at_its_next_step(
    alice: User, rita: User, adam: User, tiny_base: Path
) -> None:
    job, _ = services.finetune_create(
        export=sft_export(alice, rita), method="sft", base_model=str(tiny_base),
        hyperparameters={**TINY, "max_steps": 50}, user=adam, queue=False,
    )  # fmt: skip
    services.finetune_run(job_id=job.pk, backend=_AdminCancelsAfterTheFirstStep())
    job.refresh_from_db()

    assert job.status == FineTuneJob.Status.CANCELLED, job.error + job.log
    assert job.cancel_requested and job.finished_at is not None
    assert 1 <= job.steps_done < 50 and job.steps_total == 50
    assert job.endpoint is None and not job.lineage
    assert not ModelEndpoint.objects.filter(options__finetune_job=job.pk).exists()
    assert not output_path(job).exists(), "no model folder is left to serve"
    assert "training: 50 steps" in job.log and "cancelled by an admin" in job.log
    assert AuditEntry.objects.filter(action="finetune.cancel", actor_id=adam.pk).count() == 1
