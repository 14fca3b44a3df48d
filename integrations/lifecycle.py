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
import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from types import TracebackType
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from .models import Connection, SyncChunk, SyncRun
from .signals import sync_finished

logger = logging.getLogger(__name__)

ABANDONED_MESSAGE = (
    "The worker running this sync stopped (crash or restart) before it finished; "
    "the next sync started clean."
)


class SyncAlreadyRunning(Exception):
    """Another sync of the same connection holds the claim."""


def _stale_before(now: datetime) -> datetime:
    """A running run whose heartbeat is older than this was lost with its worker."""
    return now - timedelta(seconds=settings.VECTIS_SYNC_STALE_SECONDS)


def live_sync_run(connection: Connection, *, now: datetime) -> SyncRun | None:
    """The run syncing the connection now (its heartbeat fresh), if any: one that would
    make a new claim fail. A run whose worker died does not count."""
    return SyncRun.objects.filter(
        connection=connection,
        outcome=SyncRun.Outcome.RUNNING,
        heartbeat_at__gte=_stale_before(now),
    ).first()


def claim_sync_run(connection: Connection, *, trigger: str, now: datetime) -> SyncRun:
    """Claim the connection for one sync by inserting its `running` run.

    The partial unique index on running runs makes the insert the lock: a second
    claim fails in the database, whichever process or machine it comes from. A run
    whose heartbeat stopped (its worker died) is first marked abandoned, so a crash
    never blocks the next sync.
    """
    SyncRun.objects.filter(
        connection=connection,
        outcome=SyncRun.Outcome.RUNNING,
        heartbeat_at__lt=_stale_before(now),
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
    """Writes a running sync's heartbeat (and its part's, when given; with `own_parts`,
    every running part this process claimed) every
    `VECTIS_SYNC_HEARTBEAT_SECONDS` from a background thread for as long as the work is
    alive (a context manager around it).

    On a timer, not on progress: a vendor that answers one request a second keeps the
    run looking alive as surely as a fast one. The thread uses its own database
    connection and closes it when the run ends.
    """

    def __init__(
        self,
        run: SyncRun,
        *,
        chunk: SyncChunk | None = None,
        own_parts: bool = False,
        interval: float | None = None,
    ) -> None:
        self.run = run
        self.chunk = chunk
        # Every running part of the run this process claimed (a run done in one process:
        # a part can be running while the next one is read, and the watchdog must not
        # take it for lost and queue it again).
        self.own_parts = own_parts
        self.interval = interval or settings.VECTIS_SYNC_HEARTBEAT_SECONDS
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"sync-heartbeat-{run.pk}", daemon=True
        )

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    now = timezone.now()
                    beat_sync_run(self.run, now=now)
                    if self.chunk is not None:
                        SyncChunk.objects.filter(
                            pk=self.chunk.pk, state=SyncChunk.State.RUNNING
                        ).update(heartbeat_at=now)
                    if self.own_parts:
                        SyncChunk.objects.filter(
                            run=self.run, state=SyncChunk.State.RUNNING, worker=this_worker()
                        ).update(heartbeat_at=now)
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
    The schedule (`next_sync_at`) is not touched: it belongs to the beat tick. A run
    that is no longer running (taken as abandoned meanwhile) is left as it is."""
    with transaction.atomic():
        # Locked, so of two finishers (the last part's task and the watchdog) one finishes.
        current = (
            SyncRun.objects.select_for_update().filter(pk=run.pk).values_list("outcome", flat=True)
        )
        if list(current) != [SyncRun.Outcome.RUNNING]:
            logger.warning("Sync run %s was already over when it was to finish", run.pk)
            run.refresh_from_db()
            return run
        return _finish(
            run,
            outcome=outcome,
            now=now,
            counts=counts,
            http_requests=http_requests,
            error=error,
            failed_accounts=failed_accounts,
            stopped_early=stopped_early,
            stored_data=stored_data,
            notes=notes,
        )


def _finish(
    run: SyncRun,
    *,
    outcome: str,
    now: datetime,
    counts: dict[str, int],
    http_requests: int,
    error: str,
    failed_accounts: list[str] | None,
    stopped_early: bool,
    stored_data: bool,
    notes: str,
) -> SyncRun:
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


# --- the parts of a run ------------------------------------------------------------------------
#
# A large sync is split into parts (SyncChunk), each one Celery task. The database, not the
# broker, keeps them together: a task claims its part (pending → running), beats its
# heartbeat, and records how it ended; whoever ends the last part finishes the run. The
# watchdog (`tend_sync_runs`, every beat tick) queues again a part whose worker died or
# whose message was lost, and fails it after `VECTIS_SYNC_CHUNK_ATTEMPTS` tries.

# A run whose parts have not all ended after this long is ended by the watchdog (its
# missing parts fail): no worker picked them up.
RUN_MAX_AGE = timedelta(hours=6)


def this_worker() -> str:
    """Who claims a part: this host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"[:255]


def claim_chunk(chunk_id: int, *, now: datetime) -> SyncChunk | None:
    """Take a part for this worker, if it is still waiting and its run still running.
    None: someone else has it, it has ended, or its run is over (a duplicate message, a
    run taken as abandoned) — the caller does nothing."""
    claimed = SyncChunk.objects.filter(
        pk=chunk_id, state=SyncChunk.State.PENDING, run__outcome=SyncRun.Outcome.RUNNING
    ).update(
        state=SyncChunk.State.RUNNING,
        attempts=F("attempts") + 1,
        started_at=now,
        heartbeat_at=now,
        worker=this_worker(),
    )
    if not claimed:
        return None
    return SyncChunk.objects.select_related("run__connection").get(pk=chunk_id)


def finish_chunk(chunk: SyncChunk, *, state: str, now: datetime, **result: Any) -> bool:
    """Record how a part ended (`result`: counts, failed_accounts, problems, notes,
    http_requests, error, stopped_early, stored); True when it was the run's last part
    (the caller then finishes the run). A part the watchdog took back meanwhile (its
    worker looked dead) is not recorded twice."""
    with transaction.atomic():
        ended = SyncChunk.objects.filter(pk=chunk.pk, state=SyncChunk.State.RUNNING).update(
            state=state, finished_at=now, heartbeat_at=now, **result
        )
        if not ended:
            return False
        return _count_finished(chunk.run_id)


def _count_finished(run_id: int) -> bool:
    """One more part of the run ended (inside the caller's transaction); True when that
    was the last. The row lock of the UPDATE orders concurrent callers, so exactly one
    sees the count reach the total."""
    SyncRun.objects.filter(pk=run_id).update(chunks_finished=F("chunks_finished") + 1)
    finished, total = SyncRun.objects.filter(pk=run_id).values_list(
        "chunks_finished", "chunks_total"
    )[0]
    return bool(finished >= total)


@dataclass
class Tended:
    """What the watchdog found: parts to queue again, runs to finish."""

    requeue: list[int] = field(default_factory=list)
    finish: list[int] = field(default_factory=list)


def tend_sync_runs(*, now: datetime) -> Tended:
    """The watchdog of runs split into parts (every beat tick):

    - a running part whose heartbeat is older than `VECTIS_SYNC_STALE_SECONDS` lost its
      worker: it waits again (queued anew), or fails after `VECTIS_SYNC_CHUNK_ATTEMPTS`;
    - a part waiting that long since it was queued may have lost its message: queued
      again (a duplicate finds it claimed and does nothing);
    - a run whose parts have not all ended keeps its heartbeat (it is alive while they
      are handled); one older than RUN_MAX_AGE has its missing parts failed;
    - a run whose parts have all ended but that nobody finished is finished.
    """
    stale_before = now - timedelta(seconds=settings.VECTIS_SYNC_STALE_SECONDS)
    tended = Tended()
    live = Q(run__outcome=SyncRun.Outcome.RUNNING)
    dead = SyncChunk.objects.filter(
        live, state=SyncChunk.State.RUNNING, heartbeat_at__lt=stale_before
    ).values_list("pk", "attempts", "run_id")
    for pk, attempts, run_id in dead:
        claim = SyncChunk.objects.filter(
            pk=pk, state=SyncChunk.State.RUNNING, heartbeat_at__lt=stale_before
        )
        if attempts >= settings.VECTIS_SYNC_CHUNK_ATTEMPTS:
            with transaction.atomic():
                if claim.update(
                    state=SyncChunk.State.FAILED,
                    finished_at=now,
                    error=(
                        f"The worker reading this part stopped {attempts} time(s) before it "
                        "finished (crash or restart); its accounts keep the data of the last "
                        "sync and are read again next time."
                    ),
                ) and _count_finished(run_id):
                    tended.finish.append(run_id)
        elif claim.update(state=SyncChunk.State.PENDING, queued_at=now):
            tended.requeue.append(pk)
    lost = SyncChunk.objects.filter(live, state=SyncChunk.State.PENDING, queued_at__lt=stale_before)
    for pk in lost.values_list("pk", flat=True):
        if SyncChunk.objects.filter(
            pk=pk, state=SyncChunk.State.PENDING, queued_at__lt=stale_before
        ).update(queued_at=now):
            tended.requeue.append(pk)
    parted = SyncRun.objects.filter(outcome=SyncRun.Outcome.RUNNING, chunks_total__gt=0)
    for run_id in parted.filter(
        started_at__lt=now - RUN_MAX_AGE, chunks_finished__lt=F("chunks_total")
    ).values_list("pk", flat=True):
        with transaction.atomic():
            for pk in SyncChunk.objects.filter(
                run_id=run_id, state__in=[SyncChunk.State.PENDING, SyncChunk.State.RUNNING]
            ).values_list("pk", flat=True):
                if SyncChunk.objects.filter(
                    pk=pk, state__in=[SyncChunk.State.PENDING, SyncChunk.State.RUNNING]
                ).update(
                    state=SyncChunk.State.FAILED,
                    finished_at=now,
                    error=(
                        f"No worker finished this part within {RUN_MAX_AGE.seconds // 3600} "
                        "hours; its accounts keep the data of the last sync."
                    ),
                ) and _count_finished(run_id):
                    tended.finish.append(run_id)
    parted.filter(chunks_finished__lt=F("chunks_total")).update(heartbeat_at=now)
    tended.finish += [
        pk
        for pk in parted.filter(
            chunks_finished__gte=F("chunks_total"), heartbeat_at__lt=stale_before
        ).values_list("pk", flat=True)
        if pk not in tended.finish
    ]
    return tended
