"""The Keepit sync (filled in by the sync issue)."""

from __future__ import annotations

from integrations.models import Connection, SyncRun


def sync_connection(connection: Connection, *, trigger: str) -> SyncRun:
    raise NotImplementedError("The Keepit sync is not built yet.")
