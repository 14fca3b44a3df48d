"""`manage.py keepit_connection add|list|test|enable|disable`: Keepit connections for
operators and automation.

Secrets never come from the command line (it ends up in shell history and `ps`): they
are read from KEEPIT_USERNAME / KEEPIT_PASSWORD / KEEPIT_TOKEN_LOGIN /
KEEPIT_TOKEN_PASSWORD, or asked for at an interactive prompt.
"""

from __future__ import annotations

import getpass
import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.timesince import timesince

from keepit.forms import KeepitConnectionForm
from keepit.models import KeepitConnection
from keepit.provider import KeepitProvider


class Command(BaseCommand):
    help = (
        "Manage Keepit connections: add, list, test, enable, disable. Secrets are read from "
        "KEEPIT_USERNAME, KEEPIT_PASSWORD, KEEPIT_TOKEN_LOGIN, KEEPIT_TOKEN_PASSWORD or a prompt."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        add = actions.add_parser("add", help="Add a connection (tested before it is saved).")
        add.add_argument("--name", required=True)
        add.add_argument("--region", default="", help="e.g. us-dc")
        add.add_argument("--account-guid", default="")
        add.add_argument("--url", default="", help="Keepit account URL instead of region + GUID")
        add.add_argument("--enable", action="store_true", help="Enable syncing at once.")
        add.add_argument("--skip-test", action="store_true", help="Save without testing.")
        actions.add_parser("list", help="List connections and their state.")
        for name in ("test", "enable", "disable"):
            sub = actions.add_parser(name, help=f"{name.capitalize()} a connection.")
            sub.add_argument("connection", type=int, help="Connection ID (see list).")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"_{options['action']}")(options)

    def _get(self, pk: int) -> KeepitConnection:
        connection = KeepitConnection.objects.filter(pk=pk).first()
        if connection is None:
            raise CommandError(f"No Keepit connection with ID {pk}.")
        return connection

    def _secret(self, variable: str, prompt: str) -> str:
        value = os.environ.get(variable, "")
        if not value and sys.stdin.isatty():
            value = getpass.getpass(f"{prompt} (blank to skip): ")
        return value

    def _add(self, options: dict[str, Any]) -> None:
        username = os.environ.get("KEEPIT_USERNAME", "")
        token_login = os.environ.get("KEEPIT_TOKEN_LOGIN", "")
        if not username and not token_login and sys.stdin.isatty():
            token_login = input("API token login (blank to use a username): ").strip()
            if not token_login:
                username = input("Username: ").strip()
        data = {
            "name": options["name"],
            "keepit_url": options["url"],
            "region": options["region"],
            "account_guid": options["account_guid"],
            "username": username,
            "token_login": token_login,
            "password": self._secret("KEEPIT_PASSWORD", "Password") if username else "",
            "token_password": (
                self._secret("KEEPIT_TOKEN_PASSWORD", "API token password") if token_login else ""
            ),
        }
        if options["enable"]:
            data["enabled"] = "on"
        form = KeepitConnectionForm(data=data)
        if not form.is_valid():
            problems = [
                f"{form.fields[f].label if f in form.fields else ''}: {e}".lstrip(": ")
                for f, errors in form.errors.items()
                for e in errors
            ]
            raise CommandError("The connection is not valid:\n  " + "\n  ".join(problems))
        if not options["skip_test"]:
            result = KeepitProvider().test_connection(
                config=form.config_values(), secrets=form.effective_secrets()
            )
            if not result.ok:
                raise CommandError(f"Test connection failed: {result.message}")
            self.stdout.write(self.style.SUCCESS(result.message))
            for warning in result.warnings:
                self.stdout.write(self.style.WARNING(warning))
        connection = form.save()
        self.stdout.write(
            f"Saved Keepit connection {connection.pk} \u201c{connection.name}\u201d"
            f" ({'enabled' if connection.enabled else 'disabled'})."
        )

    def _list(self, options: dict[str, Any]) -> None:
        connections = KeepitConnection.objects.order_by("id")
        if not connections:
            self.stdout.write("No Keepit connection yet.")
        for c in connections:
            state = c.state.lower()
            last = f"{timesince(c.last_success_at)} ago" if c.last_success_at else "never"
            self.stdout.write(
                f"{c.pk:>4}  {c.name}  {c.region}/{c.account_guid}  {state}  "
                f"last successful sync: {last}"
            )
            if c.is_failing():
                self.stdout.write(f"      last error: {c.last_error}")

    def _test(self, options: dict[str, Any]) -> None:
        connection = self._get(options["connection"])
        result = KeepitProvider().test_connection(
            config=connection.config, secrets=connection.secrets
        )
        if not result.ok:
            raise CommandError(result.message)
        self.stdout.write(self.style.SUCCESS(result.message))
        for line in result.details:
            self.stdout.write(line)
        for warning in result.warnings:
            self.stdout.write(self.style.WARNING(warning))

    def _enable(self, options: dict[str, Any]) -> None:
        connection = self._get(options["connection"])
        KeepitConnection.objects.filter(pk=connection.pk).update(enabled=True, next_sync_at=None)
        self.stdout.write(f"Enabled \u201c{connection.name}\u201d; it syncs at the next run.")

    def _disable(self, options: dict[str, Any]) -> None:
        connection = self._get(options["connection"])
        KeepitConnection.objects.filter(pk=connection.pk).update(enabled=False)
        self.stdout.write(f"Disabled \u201c{connection.name}\u201d.")
