"""`manage.py finetune` runs the same job as the console, in this process, prints the endpoint it
registered, and finds that job again when run twice; a hosted job finds its account in the
catalogue when there is one, and `--user` names whom the job is started for."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from chatbot.llm.catalogue import local_endpoint_ensure
from chatbot.models import AuditEntry, FineTuneJob, ModelEndpoint
from tests.evaluation.finetune.support import dpo_export
from tests.evaluation.finetune.test_hosted import MODEL, _provider
from tests.fake_peers import fake_peer

pytestmark = pytest.mark.django_db(transaction=True)


def _run(*args: str) -> str:
    out = StringIO()
    call_command("finetune", *args, stdout=out)
    return out.getvalue()


def test_it_fine_tunes_from_the_command_line_and_prints_the_endpoint(
    alice: User, rita: User, tiny_base: Path
) -> None:
    export = dpo_export(alice, rita)
    args = ("--export", str(export.pk), "--method", "dpo", "--base", str(tiny_base), "--max-steps", "2",
            "--batch-size", "2", "--adapter")  # fmt: skip
    first = _run(*args)
    job = FineTuneJob.objects.get()
    assert job.status == FineTuneJob.Status.DONE and job.endpoint is not None
    assert f"Registered endpoint: {job.endpoint.name} (local_hf, {job.endpoint.model_id})" in first
    assert job.lineage["started_by"] is None and job.hyperparameters["merge"] is False

    second = _run(*args)
    assert f"Found fine-tuning job {job.pk}" in second and job.endpoint.name in second
    assert FineTuneJob.objects.count() == 1
    assert ModelEndpoint.objects.filter(provider="local_hf").count() == 1


def test_it_says_why_it_cannot_start(alice: User, rita: User, tiny_base: Path) -> None:
    export = dpo_export(alice, rita)
    with pytest.raises(CommandError, match="use dpo"):
        _run("--export", str(export.pk), "--method", "sft", "--base", str(tiny_base))
    with pytest.raises(CommandError, match="no export 999"):
        _run("--export", "999", "--method", "sft", "--base", str(tiny_base))


def test_it_runs_a_hosted_job_through_the_only_account_for_the_user_named(
    alice: User, rita: User, adam: User
) -> None:
    export = dpo_export(alice, rita)
    local_endpoint_ensure()  # the local llama.cpp server: OpenAI-compatible, but it cannot train
    ModelEndpoint.objects.create(
        name="retired-account", provider=ModelEndpoint.Provider.OPENAI,
        base_url="http://127.0.0.1:9/v1", model_id="old", enabled=False,
    )  # fmt: skip
    args = ("--export", str(export.pk), "--method", "dpo", "--base", "base-mini",
            "--backend", "hosted")  # fmt: skip
    with fake_peer(_provider(done_after=1)) as (url, seen):
        account = ModelEndpoint.objects.create(
            name="hosted-account", provider=ModelEndpoint.Provider.OPENAI, base_url=f"{url}/v1",
            model_id="base-mini", region="eu",
        )  # fmt: skip
        printed = _run(*args, "--user", "adam")

    job = FineTuneJob.objects.get()
    assert "Hosted through hosted-account (the only account)." in printed
    assert job.status == FineTuneJob.Status.DONE and job.backend == "hosted"
    assert job.hosted_via == account and job.created_by == adam
    assert job.endpoint is not None and job.endpoint.model_id == MODEL
    assert f"Registered endpoint: {job.endpoint.name} (openai, {MODEL})" in printed
    assert any(r["path"] == "/v1/fine_tuning/jobs" and r["method"] == "POST" for r in seen)
    assert job.lineage["started_by"] == "adam"
    assert AuditEntry.objects.get(action="finetune.start").actor_id == adam.pk

    # Two accounts (the fine-tuned model it registered is not one): it names them and asks.
    ModelEndpoint.objects.create(
        name="second-account", provider=ModelEndpoint.Provider.OPENAI,
        base_url="http://127.0.0.1:9/v1", model_id="base-mini",
    )  # fmt: skip
    with pytest.raises(
        CommandError, match=r"\(hosted-account, second-account\): choose one with --via"
    ):
        _run(*args, "--epochs", "2")
    with pytest.raises(CommandError, match="may not fine-tune"):
        _run(*args, "--via", "hosted-account", "--user", "nora")
    with pytest.raises(CommandError, match="no active user named 'ghost'"):
        _run(*args, "--via", "hosted-account", "--user", "ghost")
    assert FineTuneJob.objects.count() == 1
