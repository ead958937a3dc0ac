from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from chatbot.accounts.services import demo_users_ensure, roles_ensure
from chatbot.agent.tools.access import DEMO_ENABLED, tools_ensure
from chatbot.agent.tools.classifier_training import classifiers_demo_ensure
from chatbot.agent.tools.reporting_demo import reporting_demo_ensure
from chatbot.knowledge.demo import demo_knowledge_ensure
from chatbot.knowledge.services import sources_queue_pending
from chatbot.llm.catalogue import local_endpoint_ensure
from evaluation.datasets.demo import demo_dataset_ensure
from evaluation.review.flagging import rules_ensure
from evaluation.services import judges_ensure


class Command(BaseCommand):
    help = (
        "Create the roles, the local model's catalogue entry and (with --demo) the demo users "
        "and the demo knowledge base."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--demo",
            action="store_true",
            help="Create alice, rita, adam and nora, and the demo knowledge base.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        roles_ensure()
        endpoint = local_endpoint_ensure()
        self.stdout.write(f"model catalogue: {endpoint.name} at {endpoint.base_url}")
        judges = ", ".join(f"{j}{'' if j.enabled else ' (off)'}" for j in judges_ensure())
        self.stdout.write(f"judges: {judges}")
        rules = ", ".join(f"{r}{'' if r.enabled else ' (off)'}" for r in rules_ensure())
        self.stdout.write(f"review rules: {rules}")
        if options["demo"]:
            users = demo_users_ensure(password=settings.DEMO_PASSWORD)
            names = ", ".join(u.username for u in users)
            self.stdout.write(f"demo users: {names} (password: {settings.DEMO_PASSWORD})")
            for collection in demo_knowledge_ensure():
                self.stdout.write(f"demo knowledge base: {collection.name} (ingesting)")
            dataset = demo_dataset_ensure()
            if dataset is not None:
                self.stdout.write(f"demo dataset: {dataset.name} ({dataset.items.count()} items)")
            # Only on the embedded server: a configured reporting database is someone else's.
            if settings.EMBEDDED_REPORTING:
                tickets = reporting_demo_ensure()
                self.stdout.write(
                    f"demo reporting database: {settings.REPORTING_DEMO_DATABASE} ({tickets} "
                    f"tickets, read by {settings.REPORTING_READER_ROLE})"
                )
            classifiers = ", ".join(
                f"{c.task} v{c.version} ({c.heldout_accuracy or 0:.0%} held-out accuracy vs "
                f"{c.baseline_accuracy or 0:.0%} majority baseline)"
                for c in classifiers_demo_ensure()
            )
            if classifiers:
                self.stdout.write(f"demo classifiers: {classifiers}")
        tools = tools_ensure(enable=DEMO_ENABLED if options["demo"] else ("kb_search",))
        listed = ", ".join(f"{t.name}{'' if t.enabled else ' (off)'}" for t in tools)
        self.stdout.write(f"agent tools: {listed}")
        waiting = sources_queue_pending()
        if waiting:
            self.stdout.write(f"knowledge base: queued {waiting} sources waiting to be ingested")
