"""`manage.py keepit_sync`: run the Keepit sync now, in the foreground, with progress."""

from __future__ import annotations

import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from backups.runner import run_sync
from integrations.lifecycle import SyncAlreadyRunning
from integrations.models import SyncRun
from keepit.models import KeepitConnection


class Command(BaseCommand):
    help = (
        "Sync Keepit connections now (all enabled ones, or one with --connection), showing "
        "progress and a summary. Exits non-zero when a sync fails or is partial."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--connection", type=int, help="Only this connection (its ID).")
        parser.add_argument("--quiet", action="store_true", help="Print only the summary.")

    def handle(self, *args: Any, **options: Any) -> None:
        connections = KeepitConnection.objects.order_by("id")
        if options["connection"] is not None:
            connections = connections.filter(pk=options["connection"])
            if not connections.exists():
                raise CommandError(f"No Keepit connection with ID {options['connection']}.")
        else:
            connections = connections.filter(enabled=True)
            if not connections.exists():
                raise CommandError("No enabled Keepit connection. Add one in Admin → Integrations.")
        failures = 0
        for connection in connections:
            self.stdout.write(f"Syncing \u201c{connection.name}\u201d ({connection.region}) …")
            started = time.monotonic()
            try:
                run = run_sync(
                    connection,
                    trigger=SyncRun.Trigger.COMMAND,
                    progress=None if options["quiet"] else self._progress,
                )
            except SyncAlreadyRunning as exc:
                self.stderr.write(str(exc))
                failures += 1
                continue
            self._clear_line()
            self._summary(run, time.monotonic() - started)
            if run.outcome != SyncRun.Outcome.SUCCEEDED:
                failures += 1
        if failures:
            raise CommandError(f"{failures} sync(s) did not succeed.")

    def _progress(self, phase: str, done: int, total: int) -> None:
        text = f"  {phase}: {done}/{total}" if total else f"  {phase}: {done}"
        if sys.stdout.isatty():
            self.stdout.write("\r" + text.ljust(60), ending="")
            self.stdout.flush()
        elif total == 0 or done == total:
            self.stdout.write(text)

    def _clear_line(self) -> None:
        if sys.stdout.isatty():
            self.stdout.write("\r" + " " * 60 + "\r", ending="")

    def _summary(self, run: SyncRun, seconds: float) -> None:
        c = run.counts
        style = {
            SyncRun.Outcome.SUCCEEDED: self.style.SUCCESS,
            SyncRun.Outcome.PARTIAL: self.style.WARNING,
        }.get(run.outcome, self.style.ERROR)  # type: ignore[call-overload]
        skipped = f", {c['own_reads_skipped']} not stored" if c.get("own_reads_skipped") else ""
        self.stdout.write(style(f"  {run.get_outcome_display()} in {seconds:.1f} s"))
        self.stdout.write(
            f"  accounts: {c.get('accounts_seen', 0)} seen, {c.get('accounts_linked', 0)} linked, "
            f"{c.get('customers_created', 0)} customers created, "
            f"{c.get('accounts_ambiguous', 0)} ambiguous\n"
            f"  connectors: {c.get('connectors_added', 0)} added, "
            f"{c.get('connectors_updated', 0)} updated, {c.get('connectors_removed', 0)} removed; "
            f"{c.get('status_changes', 0)} status changes\n"
            f"  audit events: {c.get('events_added', 0)} added of {c.get('events_seen', 0)} read"
            f" ({c.get('own_reads_added', 0)} of Vectis's own API reads stored apart{skipped}; "
            f"{c.get('events_relinked', 0)} earlier events relinked)\n"
            f"  HTTP requests: {run.http_requests}"
        )
        if run.error:
            self.stdout.write(style(f"  {run.error}"))
