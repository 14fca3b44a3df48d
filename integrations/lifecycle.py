"""The life of a sync run, for every provider: the schedule, the claim, the timed
heartbeat, the finish and its outcome.

The schedule: each enabled connection has `next_sync_at`, the slot of its next scheduled
sync. Beat ticks every `VECTIS_SYNC_TICK_SECONDS`; a tick takes the slots that have come
(`take_due_slots`) and moves each on by whole intervals (claimed with a conditional
UPDATE, so two ticks never take one slot twice). Slots are anchored on the schedule, not
on when a run happened to finish, so a connection starts a sync every interval (± one
tick) and `next_sync_at` is always a future time the schedule keeps.

The claim: inserting a `running` SyncRun is the lock (a partial unique index allows one
per connection); a run whose heartbeat stopped is abandoned by the next claim.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from functools import partial
from types import TracebackType
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from .models import Connection, SyncRun
from .signals import sync_finished

logger = logging.getLogger(__name__)

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
            run = SyncRun.objects.create(
                connection=connection, trigger=trigger, started_at=now, heartbeat_at=now
            )
    except IntegrityError:
        raise SyncAlreadyRunning(f"A sync of “{connection.name}” is already running.") from None
    # A connection's first sync (Sync now, the demo, the command line) starts its schedule:
    # the next one is an interval later, not at the very next tick.
    Connection.objects.filter(pk=connection.pk, next_sync_at__isnull=True).update(
        next_sync_at=now + sync_interval()
    )
    return run


def beat_sync_run(run: SyncRun, *, now: datetime) -> None:
    """Tell other workers this run is alive."""
    SyncRun.objects.filter(pk=run.pk, outcome=SyncRun.Outcome.RUNNING).update(heartbeat_at=now)


class RunHeartbeat:
    """Writes a running sync's heartbeat every `VECTIS_SYNC_HEARTBEAT_SECONDS` from a
    background thread for as long as the run is alive (a context manager around it).

    On a timer, not on progress: a vendor that answers one request a second keeps the
    run looking alive as surely as a fast one. The thread uses its own database
    connection and closes it when the run ends.
    """

    def __init__(self, run: SyncRun, *, interval: float | None = None) -> None:
        self.run = run
        self.interval = interval or settings.VECTIS_SYNC_HEARTBEAT_SECONDS
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"sync-heartbeat-{run.pk}", daemon=True
        )

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    beat_sync_run(self.run, now=timezone.now())
                except Exception:  # a lost database connection must not kill the sync
                    logger.warning("Heartbeat of sync run %s not written", self.run.pk)
                    connections.close_all()
        finally:
            connections.close_all()  # this thread's connections only

    def __enter__(self) -> RunHeartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=max(5.0, self.interval))


def finish_sync_run(
    run: SyncRun,
    *,
    outcome: str,
    now: datetime,
    counts: dict[str, int],
    http_requests: int,
    error: str = "",
    failed_accounts: list[str] | None = None,
    stopped_early: bool = False,
    stored_data: bool = True,
    notes: str = "",
) -> SyncRun:
    """Record the end of a run on the run and on its connection, then tell listeners.

    `stopped_early`: a partial run that ran out of time and will continue, not one that
    failed to read something; it neither counts towards Degraded nor ends a streak.
    `stored_data`: the run stored what it read (False: it stopped before it could, so the
    data shown is still the previous run's and "last successful sync" must not move).
    The schedule (`next_sync_at`) is not touched: it belongs to the beat tick."""
    run.outcome = outcome
    run.finished_at = now
    run.heartbeat_at = now
    run.counts = counts
    run.http_requests = http_requests
    run.error = error
    run.failed_accounts = failed_accounts or []
    run.notes = notes
    run.save(
        update_fields=[
            "outcome",
            "finished_at",
            "heartbeat_at",
            "counts",
            "http_requests",
            "error",
            "failed_accounts",
            "notes",
        ]
    )
    updates: dict[str, Any] = {"last_sync_started_at": run.started_at}
    if outcome in (SyncRun.Outcome.SUCCEEDED, SyncRun.Outcome.PARTIAL) and stored_data:
        updates["last_success_at"] = now
    if outcome == SyncRun.Outcome.PARTIAL and not stopped_early:
        updates["partial_runs_in_row"] = F("partial_runs_in_row") + 1
    elif outcome != SyncRun.Outcome.PARTIAL:
        updates["partial_runs_in_row"] = 0  # the streak of partial runs is over
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


# --- the schedule ------------------------------------------------------------------------


def sync_interval() -> timedelta:
    return timedelta(minutes=settings.VECTIS_SYNC_INTERVAL_MINUTES)


def _tick_tolerance() -> timedelta:
    # A tick that comes a moment before the slot (beat's timer drifts) still takes it.
    return timedelta(seconds=settings.VECTIS_SYNC_TICK_SECONDS) / 2


def following_slot(slot: datetime | None, *, now: datetime) -> datetime:
    """The slot after `slot`: whole intervals on from it, the first one after this tick
    (slots missed while beat or the workers were down are skipped, not run back to back).
    A connection without a slot (new, just enabled) starts its schedule now."""
    interval = sync_interval()
    if slot is None:
        return now + interval
    horizon = now + _tick_tolerance()
    if slot + interval > horizon:
        return slot + interval
    missed = (horizon - slot) // interval
    return slot + (missed + 1) * interval


def connections_due_for_sync(*, now: datetime) -> list[Connection]:
    """Enabled connections whose slot has come (or that have none yet)."""
    return list(
        Connection.objects.filter(enabled=True)
        .filter(Q(next_sync_at__isnull=True) | Q(next_sync_at__lte=now + _tick_tolerance()))
        .order_by("id")
    )


def take_due_slots(*, now: datetime) -> list[int]:
    """Claim the due slots: move each due connection's `next_sync_at` to its following
    slot with a conditional UPDATE (only if nobody moved it first). Returns the ids of
    the connections whose slot this call took."""
    taken = []
    for connection in connections_due_for_sync(now=now):
        slot = connection.next_sync_at
        unchanged = Q(next_sync_at=slot) if slot is not None else Q(next_sync_at__isnull=True)
        moved = Connection.objects.filter(unchanged, pk=connection.pk, enabled=True).update(
            next_sync_at=following_slot(slot, now=now)
        )
        if moved:
            taken.append(connection.pk)
    return taken
