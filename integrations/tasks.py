"""Celery tasks of the integrations framework: thin wrappers around services."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(name="integrations.tasks.sync_due_connections")
def sync_due_connections() -> dict[str, Any]:
    """Beat entry "keepit-sync": enqueue one sync per due, enabled connection."""
    from .services import enqueue_due_syncs

    return enqueue_due_syncs()


@shared_task(
    name="integrations.tasks.sync_connection",
    # A sync is idempotent, so a message redelivered after a worker crash is harmless.
    acks_late=True,
    expires=30 * 60,
)
def sync_connection(connection_id: int, trigger: str = "schedule") -> dict[str, Any]:
    """Sync one connection through its provider; a summary of the run comes back."""
    from .models import Connection
    from .registry import get_provider
    from .services import SyncAlreadyRunning

    connection = Connection.objects.filter(pk=connection_id).first()
    if connection is None:
        return {"connection": connection_id, "skipped": "the connection no longer exists"}
    if trigger == "schedule" and not connection.enabled:
        return {"connection": connection_id, "skipped": "the connection is disabled"}
    try:
        run = get_provider(connection.provider).sync(connection, trigger=trigger)
    except SyncAlreadyRunning as exc:
        logger.info("%s", exc)
        return {"connection": connection_id, "skipped": "already running"}
    return {
        "connection": connection_id,
        "run": run.pk,
        "outcome": run.outcome,
        "counts": run.counts,
        "error": run.error,
    }
