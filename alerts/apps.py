from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = "Alerts"

    def ready(self) -> None:
        from integrations.signals import sync_finished

        sync_finished.connect(_evaluate_after_sync, dispatch_uid="alerts-evaluate-after-sync")


def _evaluate_after_sync(sender: Any, **kwargs: Any) -> None:
    """A finished sync (sent after commit) queues an evaluation of the rules."""
    from .tasks import evaluate_alerts

    evaluate_alerts.delay()
