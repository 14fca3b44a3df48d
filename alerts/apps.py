from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = "Alerts"

    def ready(self) -> None:
        from backups.signals import account_excluded
        from integrations.signals import sync_finished

        sync_finished.connect(_evaluate_after_sync, dispatch_uid="alerts-evaluate-after-sync")
        account_excluded.connect(_end_excluded_alerts, dispatch_uid="alerts-account-excluded")


def _evaluate_after_sync(sender: Any, **kwargs: Any) -> None:
    """A finished sync (sent after commit) queues an evaluation of the rules."""
    from .tasks import evaluate_alerts

    evaluate_alerts.delay()


def _end_excluded_alerts(sender: Any, *, link: Any, by: str = "", **kwargs: Any) -> None:
    """An excluded account's open alerts end at once, without a "resolved" e-mail."""
    from django.utils import timezone

    from .services import resolve_for_excluded_account

    resolve_for_excluded_account(link, now=timezone.now(), by=by)
