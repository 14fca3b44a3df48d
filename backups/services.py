"""The one "Sync now": queued by the connection page and the demo (a command syncs in the
foreground through backups.runner; enabling a connection makes it due at the next tick)."""

from __future__ import annotations

from functools import partial

from django.db import transaction

from integrations.models import Connection, SyncRun

from .tasks import sync_connection


def request_sync(connection: Connection, *, trigger: str = SyncRun.Trigger.MANUAL) -> None:
    """Queue a sync of the connection once the current transaction commits (a worker picks
    it up). The schedule stays as it is: a manual sync is one more, not a new schedule."""
    transaction.on_commit(partial(sync_connection.delay, connection.pk, trigger))
