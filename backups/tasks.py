"""Celery tasks of the sync: thin wrappers around backups/runner.py and the schedule."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from integrations.lifecycle import SyncAlreadyRunning, take_due_slots, tend_sync_runs
from integrations.models import Connection

from .runner import finish_run, run_part, start_sync

logger = logging.getLogger(__name__)


# The tasks keep the names they had when they lived in integrations/: messages queued
# before an upgrade (a "Sync now", a scheduled sync) must still find their task.
@shared_task(name="integrations.tasks.sync_due_connections")
def sync_due_connections() -> dict[str, Any]:
    """Beat entry "sync-due-connections": enqueue one sync per connection whose slot has
    come (a slow one cannot hold up the others), and tend the runs split into parts:
    queue again a part whose worker died or whose message was lost, finish a run nobody
    finished (integrations.lifecycle.tend_sync_runs)."""
    now = timezone.now()
    due = take_due_slots(now=now)
    for pk in due:
        transaction.on_commit(partial(sync_connection.delay, pk, "schedule"))
    if due:
        logger.info("Enqueued %d due connection sync(s)", len(due))
    tended = tend_sync_runs(now=now)
    for chunk_id in tended.requeue:
        transaction.on_commit(partial(sync_part.delay, chunk_id))
    for run_id in tended.finish:
        finish_run(run_id)
    if tended.requeue or tended.finish:
        logger.warning(
            "Sync watchdog: %d part(s) queued again, %d run(s) finished",
            len(tended.requeue),
            len(tended.finish),
        )
    return {"enqueued": due, "requeued": tended.requeue, "finished": tended.finish}


@shared_task(
    name="integrations.tasks.sync_connection",
    # A sync is idempotent, so a message redelivered after a worker crash is harmless.
    acks_late=True,
    expires=30 * 60,
)
def sync_connection(connection_id: int, trigger: str = "schedule") -> dict[str, Any]:
    """Start a sync of one connection: claim it, store the account list and queue its
    parts (backups/runner.py), which any worker may take; the last one finishes it."""
    connection = Connection.objects.filter(pk=connection_id).first()
    if connection is None:
        return {"connection": connection_id, "skipped": "the connection no longer exists"}
    if trigger == "schedule" and not connection.enabled:
        return {"connection": connection_id, "skipped": "the connection is disabled"}
    try:
        run, parts, collection = start_sync(connection, trigger=trigger)
    except SyncAlreadyRunning as exc:
        logger.info("%s", exc)
        return {"connection": connection_id, "skipped": "already running"}
    if collection is not None:
        collection.close()  # each part opens its own reading, maybe on another worker
    for chunk in parts:
        transaction.on_commit(partial(sync_part.delay, chunk.pk))
    return {
        "connection": connection_id,
        "run": run.pk,
        "parts": [chunk.pk for chunk in parts],
        "outcome": run.outcome,
        "error": run.error,
    }


@shared_task(
    name="backups.tasks.sync_part",
    # The part is claimed in the database, so a duplicate message does nothing; a worker
    # that dies leaves it running with a stale heartbeat, and the watchdog queues it again.
    acks_late=False,
)
def sync_part(chunk_id: int) -> dict[str, Any]:
    """Read and store one part of a sync; the task that ends the last part finishes the
    run (outcome, counts, alerts)."""
    run = run_part(chunk_id)
    if run is None:
        return {"part": chunk_id, "skipped": "not waiting (done elsewhere, or its run is over)"}
    return {"part": chunk_id, "run": run.pk, "outcome": run.outcome}
