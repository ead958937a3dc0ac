"""Run a dataset against a model from the command line: import the jsonl file (or reuse the dataset
already imported from the same content), answer every item through the chat pipeline with no Turn
written, judge each answer, and print the per-judge means and the reference metrics.

The experiment is stored like one started from the review pages, so it can be opened and compared
there. With --json, stdout carries one JSON object and nothing else."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q

from chatbot.accounts import roles
from chatbot.models import AssistantSettings, Dataset, Experiment, ExperimentResult, ModelEndpoint
from evaluation.datasets import runner, services
from evaluation.offline.data import BadJsonlFile, load_items


class Command(BaseCommand):
    help = __doc__ or ""

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dataset", required=True, type=Path, help="A jsonl dataset file.")
        parser.add_argument("--endpoint", required=True, help="Catalogue endpoint name.")
        parser.add_argument("--name", default="", help="The experiment's name.")
        parser.add_argument(
            "--limit", type=int, default=None, help="Use only the file's first N items."
        )
        parser.add_argument(
            "--grounding",
            choices=AssistantSettings.Grounding.values,
            default=None,
            help="Grounding mode (default: the saved setting).",
        )
        parser.add_argument("--k", type=int, default=None, help="Passages per answer (k).")
        parser.add_argument("--min-similarity", type=float, default=None)
        parser.add_argument(
            "--min-coverage",
            type=float,
            default=None,
            help="Share of the question's words the chunks must contain (default: saved).",
        )
        parser.add_argument(
            "--min-answerable",
            type=float,
            default=None,
            help="The no-answer classifier's threshold, 0-1 (default: saved; 0: off).",
        )
        parser.add_argument("--system-prompt", default="", help="Blank: the product's default.")
        parser.add_argument(
            "--user",
            default=None,
            help="Retrieve as this person (default: the first knowledge admin).",
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args: Any, **options: Any) -> None:
        limit = options["limit"]
        if limit is not None and limit < 1:
            raise CommandError("--limit must be 1 or more.")
        endpoint = ModelEndpoint.objects.filter(name=options["endpoint"]).first()
        if endpoint is None:
            raise CommandError(f"There is no model named '{options['endpoint']}' in the catalogue.")
        user = self._user(options["user"])
        dataset = self._dataset(options["dataset"], limit)
        retrieval = {
            "grounding": options["grounding"],
            "k": options["k"],
            "min_similarity": options["min_similarity"],
            "min_coverage": options["min_coverage"],
            "min_answerable": options["min_answerable"],
        }
        try:
            experiment = services.experiment_create(
                dataset=dataset,
                endpoint=endpoint,
                prompt_template=options["system_prompt"],
                retrieval=retrieval,
                name=options["name"],
                user=user,
                queue=False,
            )
        except services.InvalidExperiment as exc:
            raise CommandError(str(exc)) from None
        info = self.stderr if options["json"] else self.stdout
        info.write(f"Experiment {experiment.pk}: {experiment.items_total} items on {dataset}.")

        def progress(current: Experiment, result: ExperimentResult) -> None:
            verdict = f"error: {result.error}" if result.error else "ok"
            info.write(f"  item {current.items_done} of {current.items_total}: {verdict}")

        finished = runner.experiment_run(experiment_id=experiment.pk, progress=progress)
        assert finished is not None
        if finished.status != Experiment.Status.DONE:
            raise CommandError(f"The experiment failed: {finished.error}")
        summary = finished.summary
        if options["json"]:
            self.stdout.write(json.dumps({"experiment_id": finished.pk, **summary}))
            return
        self.stdout.write(format_table(summary))

    def _dataset(self, path: Path, limit: int | None) -> Dataset:
        """The dataset holding exactly this file's items: reused when the same content (and
        limit) was imported before, so repeated runs compare on one dataset."""
        try:
            raw = path.read_bytes()
            items = load_items(raw.splitlines())
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror or exc}.") from None
        except BadJsonlFile as exc:
            raise CommandError(f"{path}: {exc}") from None
        if limit is not None:
            items = items[:limit]
            raw = b"\n".join(json.dumps(asdict(i), sort_keys=True).encode() for i in items)
        digest = hashlib.sha256(raw).hexdigest()[:12]
        name = f"{path.stem} {digest}"
        existing = Dataset.objects.filter(name=name).first()
        if existing is not None:
            return existing
        return services.dataset_create(
            name=name, description=f"Imported by run_experiment from {path.name}.", items=items
        )

    def _user(self, username: str | None) -> User | None:
        if username:
            user = User.objects.filter(username=username, is_active=True).first()
            if user is None:
                raise CommandError(f"No active user named '{username}'.")
            return user
        codename = roles.MANAGE_KNOWLEDGE.split(".")[1]
        wanted = Q(groups__permissions__codename=codename) | Q(is_superuser=True)
        return User.objects.filter(wanted, is_active=True).order_by("pk").first()


def format_table(summary: dict[str, Any]) -> str:
    rows: list[tuple[str, str]] = [("items", str(summary["n"]))]
    rows += [(f"judge {label}", _cell(v)) for label, v in summary["judges"].items()]
    rows += [(f"metric {label}", _cell(v)) for label, v in summary["metrics"].items()]
    rows += [
        ("refused", str(summary["refused"])),
        ("model errors", str(summary["errors"])),
        ("mean latency ms", _cell(summary["mean_latency_ms"], 1)),
        ("cost", str(summary["cost"])),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in rows)


def _cell(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
