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


@shared_task(name="integrations.tasks.sync_connection")
def sync_connection(connection_id: int, trigger: str = "schedule") -> dict[str, Any]:
    """Sync one connection through its provider (filled in by the sync)."""
    logger.info("Sync of connection %s requested (%s)", connection_id, trigger)
    return {"connection": connection_id, "trigger": trigger}
