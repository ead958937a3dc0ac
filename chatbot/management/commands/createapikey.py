from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from chatbot.accounts.services import ALL_SCOPES, api_key_create


class Command(BaseCommand):
    help = "Create an API key for USERNAME and print it once (only a hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="default", help="A label to recognise the key by.")
        parser.add_argument(
            "--scopes",
            default=",".join(ALL_SCOPES),
            help=f"Comma-separated, some of {', '.join(ALL_SCOPES)} (default: all).",
        )
        parser.add_argument(
            "--expires-days",
            type=int,
            default=None,
            help="The key stops working after this many days (default: never).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = User.objects.get(username=options["username"])
        except User.DoesNotExist:
            raise CommandError(f"No user named {options['username']!r}.") from None
        scopes = [s.strip() for s in options["scopes"].split(",") if s.strip()]
        days = options["expires_days"]
        if days is not None and days < 1:
            raise CommandError("--expires-days must be 1 or more.")
        expires_at = timezone.now() + timedelta(days=days) if days is not None else None
        try:
            new = api_key_create(
                user=user, name=options["name"], scopes=scopes, expires_at=expires_at
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(new.plaintext)
