"""`manage.py finetune` runs the same job as the console, in this process, prints the endpoint it
registered, and finds that job again when run twice."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from chatbot.models import FineTuneJob, ModelEndpoint
from tests.evaluation.finetune.support import dpo_export

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
