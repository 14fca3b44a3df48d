"""Celery tasks of the alerts app: thin wrappers around alerts/services.py."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.utils import timezone

from .services import evaluate, send_due


@shared_task(name="alerts.tasks.evaluate_alerts")
def evaluate_alerts() -> dict[str, Any]:
    """Evaluate every rule (beat, and after each sync) and e-mail what changed."""
    result = evaluate(now=timezone.now())
    return {
        "opened": len(result.opened),
        "resolved": len(result.resolved),
        "reminded": len(result.reminded),
        "sent": result.sent,
        "failed": result.failed,
    }


@shared_task(name="alerts.tasks.send_pending_notifications")
def send_pending_notifications() -> dict[str, int]:
    """Deliver e-mails that are due (first tries and retries after SMTP failures)."""
    sent, failed = send_due(now=timezone.now())
    return {"sent": sent, "failed": failed}
