"""How long history is kept, and its pruning (the `prune_history` command and the daily
beat task `prune-history`).

Every sync adds audit events and runs, every evaluation alert history and deliveries:
without a bound the database grows without end. Each kind of history has a retention in
days (settings); what is older is deleted in batches of `VECTIS_PRUNE_BATCH` rows, each
batch its own short transaction, so pruning a backlog of millions never holds a long lock
or a long transaction, and a stopped prune simply continues next time.

- audit events: by when they happened (`VECTIS_AUDIT_RETENTION_DAYS`, default 400 — the
  14-day window is what a sync reads, not what is kept);
- backup job days: by day (`VECTIS_JOB_DAY_RETENTION_DAYS`, default 400);
- sync runs (and their parts): by when they started (`VECTIS_SYNC_RUN_RETENTION_DAYS`,
  default 90; a running one never);
- alert history and delivery logs: alerts resolved longer ago than
  `VECTIS_ALERT_RETENTION_DAYS` (default 365), with their history and the e-mails sent
  for them, then deliveries older than that which no longer belong to any alert. An open
  alert keeps its whole history, however old;
- the dashboard's change marks (vectis.fleet_tiles): those a day old no snapshot in use
  can need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import Subquery

from alerts.models import Alert, AlertNotification
from backups.models import BackupAuditEvent, BackupJobDay
from integrations.models import SyncRun

from .models import FleetWrite


@dataclass(frozen=True)
class Retention:
    """One kind of history: its name in the output, and what of it is due at `now`."""

    name: str
    days: Callable[[], int]
    due: Callable[[datetime], models.QuerySet[Any]]


def _days(name: str) -> Callable[[], int]:
    return lambda: int(getattr(settings, name))


RETENTIONS: tuple[Retention, ...] = (
    Retention(
        "audit events",
        _days("VECTIS_AUDIT_RETENTION_DAYS"),
        # Index audit_occurred_brin (PostgreSQL): block ranges by time, tiny to keep.
        lambda cutoff: BackupAuditEvent.objects.filter(occurred_at__lt=cutoff),
    ),
    Retention(
        "backup job days",
        _days("VECTIS_JOB_DAY_RETENTION_DAYS"),
        lambda cutoff: BackupJobDay.objects.filter(day__lt=cutoff.date()),
    ),
    Retention(
        "sync runs",
        _days("VECTIS_SYNC_RUN_RETENTION_DAYS"),
        lambda cutoff: SyncRun.objects.filter(started_at__lt=cutoff).exclude(
            outcome=SyncRun.Outcome.RUNNING
        ),
    ),
    Retention(
        "resolved alerts and their history",
        _days("VECTIS_ALERT_RETENTION_DAYS"),
        lambda cutoff: Alert.objects.filter(resolved_at__lt=cutoff),
    ),
    Retention(
        "alert e-mail deliveries",
        _days("VECTIS_ALERT_RETENTION_DAYS"),
        lambda cutoff: AlertNotification.objects.filter(created_at__lt=cutoff, events__isnull=True),
    ),
    Retention(
        "dashboard change marks",
        # Tiles are kept for an hour at most (vectis.fleet_tiles.KEEP_FOR), from snapshots
        # taken after the newest mark a day old: each starts at or after that mark's
        # horizon, and never reads a mark below it. (By time alone, a transaction open for
        # a day that commits just now would lose its mark while tiles are kept.)
        lambda: 1,
        lambda cutoff: FleetWrite.objects.filter(
            xid__lt=Subquery(
                FleetWrite.objects.filter(written_at__lt=cutoff)
                .order_by("-written_at", "-id")
                .values("horizon")[:1]
            )
        ),
    ),
)


def prune_history(
    *,
    now: datetime,
    batch_size: int | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Delete what is past its retention, batch by batch; returns how many rows of each
    kind went (the cascaded rows — a run's parts, an alert's history — not counted)."""
    size = batch_size or settings.VECTIS_PRUNE_BATCH
    pruned: dict[str, int] = {}
    for retention in RETENTIONS:
        cutoff = now - timedelta(days=retention.days())
        due = retention.due(cutoff)
        total = 0
        while True:
            ids = list(due.order_by().values_list("pk", flat=True)[:size])
            if not ids:
                break
            with transaction.atomic():
                due.model.objects.filter(pk__in=ids).delete()
            total += len(ids)
            if progress is not None:
                progress(retention.name, total)
        pruned[retention.name] = total
    return pruned
