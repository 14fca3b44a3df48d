"""`manage.py evaluate_alerts`: evaluate the alert rules now and report."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from alerts.services import evaluate


class Command(BaseCommand):
    help = "Evaluate every alert rule now, e-mail what changed, and print what happened."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--no-send",
            action="store_true",
            help="Write the e-mails to the delivery log but do not send them.",
        )
        parser.add_argument(
            "--full",
            action="store_true",
            help="Look at every connector, not only those whose data changed since the last "
            "pass (after rows were loaded with the triggers off: a data-only restore, a "
            "table copied in).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        result = evaluate(now=timezone.now(), send=not options["no_send"], full=options["full"])
        for label, alerts in (
            ("Opened", result.opened),
            ("Reminded", result.reminded),
            ("Resolved", result.resolved),
        ):
            self.stdout.write(f"{label}: {len(alerts)}")
            for alert in alerts:
                self.stdout.write(f"  - {alert.summary}")
        self.stdout.write(f"E-mails written: {len(result.notifications)}")
        for notification in result.notifications:
            self.stdout.write(f"  - to {notification.recipient}: {notification.subject}")
        self.stdout.write(f"E-mails sent: {result.sent}, waiting to retry: {result.failed}")
