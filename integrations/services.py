"""Services of the integrations framework: which connections are due, enqueueing syncs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q
from django.urls import reverse
from django.utils import timezone

from .base import Provider
from .models import Connection, SyncRun
from .registry import all_providers
from .signals import sync_finished

ABANDONED_MESSAGE = (
    "The worker running this sync stopped (crash or restart) before it finished; "
    "the next sync started clean."
)


class SyncAlreadyRunning(Exception):
    """Another sync of the same connection holds the claim."""


def claim_sync_run(connection: Connection, *, trigger: str, now: datetime) -> SyncRun:
    """Claim the connection for one sync by inserting its `running` run.

    The partial unique index on running runs makes the insert the lock: a second
    claim fails in the database, whichever process or machine it comes from. A run
    whose heartbeat stopped (its worker died) is first marked abandoned, so a crash
    never blocks the next sync.
    """
    stale_before = now - timedelta(seconds=settings.VECTIS_SYNC_STALE_SECONDS)
    SyncRun.objects.filter(
        connection=connection, outcome=SyncRun.Outcome.RUNNING, heartbeat_at__lt=stale_before
    ).update(outcome=SyncRun.Outcome.ABANDONED, finished_at=now, error=ABANDONED_MESSAGE)
    try:
        with transaction.atomic():
            return SyncRun.objects.create(
                connection=connection, trigger=trigger, started_at=now, heartbeat_at=now
            )
    except IntegrityError:
        raise SyncAlreadyRunning(f"A sync of “{connection.name}” is already running.") from None


def beat_sync_run(run: SyncRun, *, now: datetime) -> None:
    """Tell other workers this run is alive."""
    SyncRun.objects.filter(pk=run.pk, outcome=SyncRun.Outcome.RUNNING).update(heartbeat_at=now)


def finish_sync_run(
    run: SyncRun,
    *,
    outcome: str,
    now: datetime,
    counts: dict[str, int],
    http_requests: int,
    error: str = "",
    failed_accounts: list[str] | None = None,
) -> SyncRun:
    """Record the end of a run on the run and on its connection, then tell listeners."""
    run.outcome = outcome
    run.finished_at = now
    run.heartbeat_at = now
    run.counts = counts
    run.http_requests = http_requests
    run.error = error
    run.failed_accounts = failed_accounts or []
    run.save(
        update_fields=[
            "outcome",
            "finished_at",
            "heartbeat_at",
            "counts",
            "http_requests",
            "error",
            "failed_accounts",
        ]
    )
    updates: dict[str, Any] = {
        "next_sync_at": now + timedelta(minutes=settings.KEEPIT_SYNC_INTERVAL_MINUTES),
        "last_sync_started_at": run.started_at,
    }
    if outcome in (SyncRun.Outcome.SUCCEEDED, SyncRun.Outcome.PARTIAL):
        updates["last_success_at"] = now
    if error:
        updates["last_error"] = error
        updates["last_error_at"] = now
    elif outcome == SyncRun.Outcome.SUCCEEDED:
        updates["last_error"] = ""
    Connection.objects.filter(pk=run.connection_id).update(**updates)
    connection = run.connection
    transaction.on_commit(
        partial(sync_finished.send, sender=Connection, connection=connection, run=run)
    )
    return run


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


@dataclass(frozen=True)
class ProviderCard:
    kind: str
    name: str
    mark: str
    description: str
    state: str  # Not configured / Enabled / Disabled / Failing
    summary: str
    configure_url: str
    can_configure: bool

    @property
    def badge_class(self) -> str:
        return {
            "Enabled": "vx-ok",
            "Failing": "vx-failed",
            "Disabled": "vx-unknown",
        }.get(self.state, "vx-onboarding")


def provider_cards(*, can_configure: Callable[[Provider], bool]) -> list[ProviderCard]:
    """One card per registered provider with its state, in one query."""
    failing = Q(last_error_at__isnull=False) & (
        Q(last_success_at__isnull=True) | Q(last_error_at__gt=F("last_success_at"))
    )
    rows = {
        row["provider"]: row
        for row in Connection.objects.values("provider").annotate(
            total=Count("id"),
            enabled_count=Count("id", filter=Q(enabled=True)),
            failing_count=Count("id", filter=Q(enabled=True) & failing),
        )
    }
    cards = []
    for provider in all_providers():
        row = rows.get(provider.kind, {"total": 0, "enabled_count": 0, "failing_count": 0})
        total, enabled, failing_count = row["total"], row["enabled_count"], row["failing_count"]
        if total == 0:
            state, summary = "Not configured", "No connection yet."
        elif failing_count:
            state = "Failing"
            summary = f"{failing_count} of {enabled} enabled connection(s) failing."
        elif enabled:
            state, summary = "Enabled", f"{enabled} of {total} connection(s) enabled."
        else:
            state, summary = "Disabled", f"{total} connection(s), none enabled."
        url = reverse(provider.admin_changelist if total else provider.admin_add)
        cards.append(
            ProviderCard(
                kind=provider.kind,
                name=provider.name,
                mark=provider.mark,
                description=provider.description,
                state=state,
                summary=summary,
                configure_url=url,
                can_configure=can_configure(provider),
            )
        )
    return cards
