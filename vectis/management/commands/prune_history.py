"""`manage.py prune_history`: delete history past its retention now (the daily beat task
does the same), with progress; `--dry-run` only counts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from vectis import retention


class Command(BaseCommand):
    help = (
        "Delete audit events, backup job days, sync runs, resolved alerts and e-mail "
        "deliveries older than their retention (VECTIS_*_RETENTION_DAYS), in batches."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="count what is due, delete nothing"
        )
        parser.add_argument(
            "--batch-size", type=int, default=None, help="rows per batch (VECTIS_PRUNE_BATCH)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        if options["dry_run"]:
            for item in retention.RETENTIONS:
                days = item.days()
                due = item.due(now - timedelta(days=days)).count()
                self.stdout.write(f"{item.name}: {due} older than {days} days")
            return

        def progress(name: str, done: int) -> None:
            self.stdout.write(f"  {name}: {done} deleted so far")

        pruned = retention.prune_history(
            now=now, batch_size=options["batch_size"], progress=progress
        )
        for name, count in pruned.items():
            self.stdout.write(self.style.SUCCESS(f"{name}: {count} deleted"))
