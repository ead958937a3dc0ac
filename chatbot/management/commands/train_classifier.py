"""Train the `classify` tool's classifiers from labelled tickets, one new version per task.

    manage.py train_classifier --data deploy/demo-reporting/tickets.csv
    manage.py train_classifier --data tickets.jsonl --task priority --label-column urgency

Reads a CSV (with a header) or JSONL file. Each task is fitted on three quarters of the rows and
measured on the other quarter against always guessing the commonest label; a version that beats
that baseline becomes the one the tool uses. Training again on the same rows changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chatbot.agent.tools.classifier_selectors import classifier_active
from chatbot.agent.tools.classifier_training import (
    DEFAULT_TEXT_COLUMNS,
    TASKS,
    TrainingDataError,
    classifiers_train_file,
)
from chatbot.models import ClassifierVersion


class Command(BaseCommand):
    help = __doc__ or ""

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--data", required=True, type=Path, help="A .csv or .jsonl file of labelled tickets."
        )
        parser.add_argument(
            "--task",
            choices=[*TASKS, "all"],
            default="all",
            help="Which classifier to train (default: every task whose label column the file has).",
        )
        parser.add_argument(
            "--text-columns",
            default=",".join(DEFAULT_TEXT_COLUMNS),
            help="Comma-separated columns joined into the text (default: subject,body).",
        )
        parser.add_argument(
            "--label-column",
            default="",
            help="The column holding the labels, when it is not named after the task "
            "(needs a single --task).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        text_columns = tuple(c.strip() for c in options["text_columns"].split(",") if c.strip())
        if not text_columns:
            raise CommandError("--text-columns names no column.")
        task = options["task"]
        if options["label_column"] and task == "all":
            raise CommandError("--label-column needs a single --task (intent or priority).")
        existing = set(ClassifierVersion.objects.values_list("pk", flat=True))
        try:
            trained = classifiers_train_file(
                path=options["data"],
                tasks=None if task == "all" else (task,),
                text_columns=text_columns,
                label_column=options["label_column"].strip(),
            )
        except TrainingDataError as exc:
            raise CommandError(str(exc)) from None
        for version in trained:
            self.stdout.write(self._line(version, new=version.pk not in existing))

    def _line(self, v: ClassifierVersion, *, new: bool) -> str:
        figures = (
            f"{v.trained_on} rows trained, {v.held_out} held out; held-out accuracy "
            f"{v.heldout_accuracy or 0:.1%} vs majority baseline {v.baseline_accuracy or 0:.1%} "
            f"({((v.heldout_accuracy or 0) - (v.baseline_accuracy or 0)) * 100:+.1f} points)"
        )
        if not new:
            return f"{v.task}: already trained on these rows as v{v.version}; {figures}. {self._state(v)}"
        return f"{v.task}: trained v{v.version}: {figures}. {self._state(v)}"

    def _state(self, v: ClassifierVersion) -> str:
        if v.active:
            return "Active."
        active = classifier_active(task=v.task)
        answering = f"Version {active.version} stays active" if active else "No version is active"
        reason = v.metrics.get("inactive_reason") or "Not active."
        return f"{reason} {answering}."
