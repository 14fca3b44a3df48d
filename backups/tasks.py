"""Celery tasks of the sync: thin wrappers around backups/runner.py and the schedule."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from integrations.lifecycle import SyncAlreadyRunning, take_due_slots
from integrations.models import Connection

from .runner import run_sync

logger = logging.getLogger(__name__)


# The tasks keep the names they had when they lived in integrations/: messages queued
# before an upgrade (a "Sync now", a scheduled sync) must still find their task.
@shared_task(name="integrations.tasks.sync_due_connections")
def sync_due_connections() -> dict[str, Any]:
    """Beat entry "sync-due-connections": enqueue one sync per connection whose slot has
    come (a slow one cannot hold up the others)."""
    due = take_due_slots(now=timezone.now())
    for pk in due:
        transaction.on_commit(partial(sync_connection.delay, pk, "schedule"))
    if due:
        logger.info("Enqueued %d due connection sync(s)", len(due))
    return {"enqueued": due}


@shared_task(
    name="integrations.tasks.sync_connection",
    # A sync is idempotent, so a message redelivered after a worker crash is harmless.
    acks_late=True,
    expires=30 * 60,
)
def sync_connection(connection_id: int, trigger: str = "schedule") -> dict[str, Any]:
    """Sync one connection through its provider; a summary of the run comes back."""
    connection = Connection.objects.filter(pk=connection_id).first()
    if connection is None:
        return {"connection": connection_id, "skipped": "the connection no longer exists"}
    if trigger == "schedule" and not connection.enabled:
        return {"connection": connection_id, "skipped": "the connection is disabled"}
    try:
        run = run_sync(connection, trigger=trigger)
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
