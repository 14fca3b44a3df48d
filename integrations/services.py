"""Services of the integrations framework: which connections are due, enqueueing syncs."""

from __future__ import annotations

import logging
from datetime import datetime
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .models import Connection

logger = logging.getLogger(__name__)


def connections_due_for_sync(*, now: datetime) -> list[Connection]:
    """Enabled connections whose next sync time has come (or was never set)."""
    return list(
        Connection.objects.filter(enabled=True)
        .filter(Q(next_sync_at__isnull=True) | Q(next_sync_at__lte=now))
        .order_by("id")
    )


def enqueue_due_syncs(*, now: datetime | None = None) -> dict[str, Any]:
    """Enqueue one sync task per due connection; a slow one cannot hold up the others."""
    from .tasks import sync_connection

    now = now or timezone.now()
    due = connections_due_for_sync(now=now)
    for connection in due:
        transaction.on_commit(partial(sync_connection.delay, connection.pk, "schedule"))
    logger.info("Enqueued %d due connection sync(s)", len(due))
    return {"enqueued": [connection.pk for connection in due]}
