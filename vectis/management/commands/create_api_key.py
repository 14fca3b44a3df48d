"""`manage.py create_api_key NAME --scope read|technician [--expires-days N]`: a key to the
public API, printed once (only its hash is kept)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from vectis.models import ApiKey
from vectis.timefmt import iso


class Command(BaseCommand):
    help = "Create a key to the public API and print it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="what the key is for, e.g. 'PSA sync' (50 characters)")
        parser.add_argument(
            "--scope",
            choices=[choice.value for choice in ApiKey.Scope],
            default=ApiKey.Scope.READ.value,
            help="read (lists and details) or technician (also acknowledge, snooze, sync)",
        )
        parser.add_argument("--expires-days", type=int, help="valid for this many days")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"].strip()
        if not name or len(name) > 50:
            raise CommandError("Give the key a name of 1 to 50 characters.")
        days = options["expires_days"]
        if days is not None and days < 1:
            raise CommandError("--expires-days must be at least 1.")
        expiry = timezone.now() + timedelta(days=days) if days else None
        _api_key, key = ApiKey.objects.create_key(
            name=name, scope=options["scope"], expiry_date=expiry, created_by="manage.py"
        )
        until = f", valid until {iso(expiry)}" if expiry else ""
        self.stderr.write(
            f"Created the {options['scope']} API key “{name}”{until}. "
            "It is shown once: store it now."
        )
        self.stdout.write(key)
