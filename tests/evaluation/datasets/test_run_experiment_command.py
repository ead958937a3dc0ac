"""`manage.py run_experiment` imports a jsonl dataset, runs it in-process with the same runner as
the task, and prints the per-judge means (one JSON object with --json)."""

from __future__ import annotations

import json
from collections.abc import Callable
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from chatbot.models import Dataset, Experiment, ModelEndpoint
from evaluation import services as judge_services
from tests.evaluation.datasets.helpers import EVALSET_ROWS
from tests.evaluation.offline.evalset import write_jsonl

pytestmark = pytest.mark.django_db

ANSWER = "The link expires after 30 minutes."


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("run_experiment", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def dataset_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "covid.jsonl", EVALSET_ROWS)


def test_it_prints_one_json_object_with_the_judges_and_metrics(
    cast: dict[str, User], fake_endpoint: Callable[..., ModelEndpoint], dataset_file: Path
) -> None:
    fake_endpoint([ANSWER])
    judge_services.judges_ensure()

    out, err = run("--dataset", str(dataset_file), "--endpoint", "fake-model", "--json",
                   "--grounding", "off", "--name", "baseline")  # fmt: skip

    data = json.loads(out)
    experiment = Experiment.objects.get(pk=data["experiment_id"])
    assert experiment.name == "baseline" and experiment.status == Experiment.Status.DONE
    assert data["n"] == 3 and data["judges"]["pii"] == 1.0
    assert data["metrics"] == {"token_f1": 0.375, "containment": 0.5, "refusal_correct": 0.0}
    assert data["judges"] == experiment.summary["judges"]
    assert "item 3 of 3: ok" in err
    # Retrieval would run as the first knowledge admin.
    assert experiment.created_by == cast["adam"]


def test_it_reuses_the_dataset_imported_from_the_same_content(
    cast: dict[str, User], fake_endpoint: Callable[..., ModelEndpoint], dataset_file: Path
) -> None:
    fake_endpoint([ANSWER])
    args = ("--dataset", str(dataset_file), "--endpoint", "fake-model", "--grounding", "off")

    first = json.loads(run(*args, "--json")[0])
    second = json.loads(run(*args, "--json")[0])
    limited = json.loads(run(*args, "--json", "--limit", "2")[0])

    assert first["experiment_id"] != second["experiment_id"]
    assert Dataset.objects.count() == 2
    same = Experiment.objects.filter(pk__in=[first["experiment_id"], second["experiment_id"]])
    assert len({e.dataset_id for e in same}) == 1
    assert limited["n"] == 2


def test_it_prints_a_table_without_json(
    cast: dict[str, User], fake_endpoint: Callable[..., ModelEndpoint], dataset_file: Path
) -> None:
    fake_endpoint([ANSWER])
    judge_services.judges_ensure()

    out, _ = run("--dataset", str(dataset_file), "--endpoint", "fake-model", "--grounding", "off")

    lines = dict(line.rsplit(None, 1) for line in out.splitlines() if line.startswith(("judge", "metric", "items")))  # fmt: skip
    assert lines["items"] == "3"
    assert lines["judge pii"] == "1.000"
    assert lines["metric token_f1"] == "0.375"
    assert lines["judge faithfulness-overlap"] == "-"


def test_it_explains_bad_input(
    cast: dict[str, User], fake_endpoint: Callable[..., ModelEndpoint], tmp_path: Path
) -> None:
    fake_endpoint([ANSWER])
    bad = write_jsonl(tmp_path / "bad.jsonl", ['{"question": "ok?"}', '{"answers": []}'])

    with pytest.raises(CommandError, match="Line 2: needs a 'question'"):
        run("--dataset", str(bad), "--endpoint", "fake-model")
    with pytest.raises(CommandError, match="no model named 'nope'"):
        run("--dataset", str(bad), "--endpoint", "nope")
    with pytest.raises(CommandError, match="Cannot read"):
        run("--dataset", str(tmp_path / "missing.jsonl"), "--endpoint", "fake-model")
    with pytest.raises(CommandError, match="No active user named 'ghost'"):
        run("--dataset", str(tmp_path / "bad.jsonl"), "--endpoint", "fake-model", "--user", "ghost")
    assert not Experiment.objects.exists()
