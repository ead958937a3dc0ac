from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from chatbot.accounts.services import demo_users_ensure, roles_ensure
from chatbot.llm.catalogue import local_endpoint_ensure


class Command(BaseCommand):
    help = "Create the roles, the local model's catalogue entry and (with --demo) the demo users."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--demo", action="store_true", help="Create alice, rita, adam and nora."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        roles_ensure()
        endpoint = local_endpoint_ensure()
        self.stdout.write(f"model catalogue: {endpoint.name} at {endpoint.base_url}")
        if options["demo"]:
            users = demo_users_ensure(password=settings.DEMO_PASSWORD)
            names = ", ".join(u.username for u in users)
            self.stdout.write(f"demo users: {names} (password: {settings.DEMO_PASSWORD})")
