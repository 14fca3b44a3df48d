from __future__ import annotations

from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = "Alerts"

    def ready(self) -> None:
        # Imported here, as Django asks: models and tasks load only once the app
        # registry is ready.
        from backups.signals import account_excluded
        from integrations.signals import sync_finished

        from . import receivers

        sync_finished.connect(receivers.evaluate_after_sync, dispatch_uid="alerts-after-sync")
        account_excluded.connect(receivers.end_excluded_alerts, dispatch_uid="alerts-excluded")
