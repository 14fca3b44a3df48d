"""`manage.py keepit_demo_setup`: point Vectis at the local Keepit sandbox (for `make demo`)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from alerts.management.commands.webhook_receiver import DEMO_SECRET
from alerts.models import AlertRule, NotificationChannel
from backups.services import request_sync
from keepit.models import KeepitConnection
from keepit_sandbox.simulation import SandboxConfig, make_guid

DEMO_NAME = "Keepit sandbox (demo)"
DEMO_CHANNEL = "Demo webhook"
DEMO_WEBHOOK_URL = "http://127.0.0.1:9200/hook"


class Command(BaseCommand):
    help = (
        "Create (or refresh) an enabled Keepit connection to the sandbox that `make demo` "
        "starts, using the sandbox's API token, and queue its first sync."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        defaults = SandboxConfig()
        parser.add_argument("--seed", type=int, default=defaults.seed, help="The sandbox's seed.")
        parser.add_argument("--region", default=defaults.region, help="The sandbox's region.")

    def handle(self, *args: Any, **options: Any) -> None:
        defaults = SandboxConfig()
        guid = make_guid(options["seed"], "parent")
        with transaction.atomic():
            connection = KeepitConnection.objects.filter(name=DEMO_NAME).first()
            if connection is None:
                connection = KeepitConnection(name=DEMO_NAME)
            connection.enabled = True
            connection.config = {
                "region": options["region"],
                "account_guid": guid,
                "username": defaults.username,
                "token_login": defaults.token_login,
            }
            connection.set_secrets(
                {"password": defaults.password, "token_password": defaults.token_password}
            )
            connection.next_sync_at = None
            connection.save()
            request_sync(connection)
        self.stdout.write(
            f"Keepit connection \u201c{DEMO_NAME}\u201d (ID {connection.pk}) points at the "
            f"sandbox account {guid}; its first sync is queued."
        )
        self._demo_rules()

    def _demo_rules(self) -> None:
        """One rule of each kind so the demo shows every alert (e-mails go to the console
        backend); a kind that already has a rule is left alone."""
        added = []
        for kind, name in (
            (AlertRule.Kind.BACKUP_STALE, "Backups stale for 48 hours"),
            (AlertRule.Kind.BACKUP_FAILED, "Backups failing"),
            (AlertRule.Kind.SUCCESS_RATE, "Backup success rate under 90 % (7 days)"),
        ):
            if not AlertRule.objects.filter(kind=kind).exists():
                AlertRule.objects.create(name=name, kind=kind, recipients="admin@localhost")
                added.append(name)
        if added:
            self.stdout.write(f"Added alert rules for admin@localhost: {'; '.join(added)}.")
        self._demo_channel()

    def _demo_channel(self) -> None:
        """A generic webhook channel to the receiver `make demo` starts (it prints what
        it receives), added to every rule: the demo shows the webhook at work."""
        channel = NotificationChannel.objects.filter(name=DEMO_CHANNEL).first()
        if channel is None:
            channel = NotificationChannel(name=DEMO_CHANNEL, kind=NotificationChannel.Kind.WEBHOOK)
            channel.set_secrets({"url": DEMO_WEBHOOK_URL, "secret": DEMO_SECRET})
            channel.save()
            self.stdout.write(
                f"Added the notification channel “{DEMO_CHANNEL}” ({DEMO_WEBHOOK_URL}); the "
                "webhook process prints what it receives."
            )
        for rule in AlertRule.objects.all():
            rule.channels.add(channel)
