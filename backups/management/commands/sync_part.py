"""`manage.py sync_part ID`: do one waiting part of a sync run (SyncChunk) in this
process — what a Celery worker does with it. A sync run in one process (the vendor's sync
command) starts its audit part this way, handing over its settings on standard input
(`--stdin`: one line, a JSON object) and a share of its request budget (`--budget`); later
lines `budget N` on standard input change that budget while the part runs (the sync's
accounts are read: the audit log may take the whole budget)."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from backups.runner import listen_for_budget, run_part
from integrations.registry import settings_prefixes


class Command(BaseCommand):
    help = "Do one waiting part of a sync run (as a worker would) and print how it ended."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("part", type=int, help="the id of the part (SyncChunk)")
        parser.add_argument(
            "--budget", type=int, default=None, help="at most this many requests in flight"
        )
        parser.add_argument(
            "--stdin",
            action="store_true",
            help="read settings (Vectis's and the providers' own only) as a JSON object on "
            "the first line of standard input, then `budget N` lines",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["stdin"]:
            prefixes = settings_prefixes()
            for name, value in json.loads(sys.stdin.readline().strip() or "{}").items():
                if not name.startswith(prefixes):
                    raise CommandError(f"{name} is not a setting this command takes.")
                setattr(settings, name, value)
        run = run_part(
            options["part"],
            budget=options["budget"],
            on_budget=listen_for_budget if options["stdin"] else None,
        )
        if run is None:
            raise CommandError(f"Part {options['part']} is not waiting: nothing was done.")
        self.stdout.write(f"Part {options['part']} done; its run is {run.outcome}.")
