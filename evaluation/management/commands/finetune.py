"""Fine-tune a model from a training export, from the command line, and print the endpoint it
registered: the same job the console starts, run in this process.

    manage.py finetune --export 12 --method sft --base /models/gemma-3-270m [--backend local]
    manage.py finetune --export 13 --method dpo --base gpt-4o-mini-2024-07-18 --backend hosted \\
        [--via openai-account] [--user adam]

A hosted job without --via runs through the one catalogue entry that can reach a fine-tuning API
(enabled, OpenAI-compatible, not the local model server, not itself a fine-tuned model); with
several, it names them and asks. --user names the admin the job is started for: the lineage's
"started by" and the audit trail's actor (without it, both say the command line).

Running it twice with the same arguments finds the first job (and its endpoint) again.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chatbot.accounts import roles
from chatbot.jobs import job_exclusive
from chatbot.models import Export, FineTuneJob, ModelEndpoint
from evaluation.finetune import selectors, services


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
            "--via",
            default="",
            help="hosted: the OpenAI-compatible catalogue entry to use (default: the only one)",
        )
        parser.add_argument(
            "--user", default="", help="the admin the job is started for (lineage and audit)"
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
        user = self._user(options["user"])
        via = self._via(options["via"], hosted=options["backend"] == FineTuneJob.Backend.HOSTED)
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
                backend=options["backend"], hosted_via=via, hyperparameters=hp, user=user,
                queue=False,
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

    def _user(self, username: str) -> User | None:
        if not username:
            return None
        user = User.objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"There is no active user named {username!r}.")
        if not user.has_perm(roles.MANAGE_SETTINGS):
            raise CommandError(f"{username} may not fine-tune models (an admin's permission).")
        return user

    def _via(self, name: str, *, hosted: bool) -> ModelEndpoint | None:
        if name:
            via = ModelEndpoint.objects.filter(name=name).first()
            if via is None:
                raise CommandError(f"There is no catalogue entry named {name!r}.")
            return via
        if not hosted:
            return None
        candidates = list(selectors.hosted_accounts())
        if len(candidates) == 1:
            self.stdout.write(f"Hosted through {candidates[0].name} (the only account).")
            return candidates[0]
        if not candidates:
            raise CommandError(
                "A hosted job runs through an enabled OpenAI-compatible catalogue entry (its "
                "base URL and API key): add one in the console, or name one with --via."
            )
        names = ", ".join(c.name for c in candidates)
        raise CommandError(
            f"Several catalogue entries could run a hosted job ({names}): choose one with --via."
        )
