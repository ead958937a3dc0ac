"""Fine-tune a model from a training export, from the command line, and print the endpoint it
registered: the same job the console starts, run in this process.

    manage.py finetune --export 12 --method sft --base /models/gemma-3-270m [--backend local]
    manage.py finetune --export 13 --method dpo --base gpt-4o-mini-2024-07-18 --backend hosted \\
        --via openai-account

Running it twice with the same arguments finds the first job (and its endpoint) again.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chatbot.jobs import job_exclusive
from chatbot.models import Export, FineTuneJob, ModelEndpoint
from evaluation.finetune import services


class Command(BaseCommand):
    help = (
        "Fine-tune a model from a training export and print the catalogue endpoint it registered."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--export", type=int, required=True, help="the training export's id")
        parser.add_argument("--method", choices=["sft", "dpo"], required=True)
        parser.add_argument(
            "--base", required=True, help="a model folder (local) or model name (hosted)"
        )
        parser.add_argument("--backend", choices=["local", "hosted"], default="local")
        parser.add_argument(
            "--via", default="", help="hosted: the OpenAI-compatible catalogue entry to use"
        )
        for name, kind in (
            ("epochs", int), ("max-steps", int), ("learning-rate", float), ("batch-size", int),
            ("lora-r", int), ("lora-alpha", int), ("beta", float),
        ):  # fmt: skip
            parser.add_argument(f"--{name}", type=kind, default=None)
        parser.add_argument(
            "--adapter", action="store_true", help="local: save the adapter, not merged weights"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        export = Export.objects.filter(pk=options["export"]).first()
        if export is None:
            raise CommandError(f"There is no export {options['export']}.")
        via = None
        if options["via"]:
            via = ModelEndpoint.objects.filter(name=options["via"]).first()
            if via is None:
                raise CommandError(f"There is no catalogue entry named {options['via']!r}.")
        hp = {
            key.replace("-", "_"): options[key.replace("-", "_")]
            for key in (
                "epochs",
                "max-steps",
                "learning-rate",
                "batch-size",
                "lora-r",
                "lora-alpha",
                "beta",
            )
        }
        hp["merge"] = not options["adapter"]
        try:
            job, created = services.finetune_create(
                export=export, method=options["method"], base_model=options["base"],
                backend=options["backend"], hosted_via=via, hyperparameters=hp, queue=False,
            )  # fmt: skip
        except services.InvalidJob as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{'Started' if created else 'Found'} fine-tuning job {job.pk}.")
        if not job.finished:
            # The same lock a worker takes: the stale-job sweep may send a silent job again, and
            # a worker must then find it running here instead of starting it a second time.
            with job_exclusive("finetune", job.pk) as mine:
                if not mine:
                    raise CommandError(f"Job {job.pk} is already running elsewhere.")
                services.finetune_run(job_id=job.pk)
            job.refresh_from_db()
        if job.status != FineTuneJob.Status.DONE or job.endpoint is None:
            raise CommandError(
                f"Job {job.pk} ended {job.status}: {job.error or 'no model registered'}"
            )
        last = job.lineage.get("losses", {})
        self.stdout.write(
            f"Losses: training {last.get('first_train')} -> {last.get('last_train')}, "
            f"validation {last.get('last_validation')}"
        )
        endpoint = job.endpoint
        self.stdout.write(
            f"Registered endpoint: {endpoint.name} ({endpoint.provider}, {endpoint.model_id})"
        )
