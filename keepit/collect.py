"""Reading Keepit for one sync: the inventory, then the audit log as a stream of batches.
It writes no table: it returns snapshots (backups/snapshot.py) and backups/ writes them.

**Inventory**: child accounts (one call; its failure fails the run); then, with bounded
concurrency (`KEEPIT_HTTP_CONCURRENCY`), each account's connectors and backup summary,
then each live connector's health. An account whose calls fail is returned with
`connectors=None` (its data stays as it was) and a sentence. If the run stops half-way
(time limit, crash), the requests not yet sent are cancelled.

**Audit log**: the window (first sync: `KEEPIT_AUDIT_WINDOW_DAYS`; then the cursor minus
`KEEPIT_AUDIT_OVERLAP_MINUTES`) is read in `KEEPIT_AUDIT_SLICE_HOURS` slices, oldest
first. A reader thread streams each slice's pages through a bounded queue while the
consumer stores them, so memory stays flat. Every batch carries the sync state to commit
with it: inside a slice, the page to resume at (`audit_resume`); after a slice, the
cursor (`audit_cursor`). A run stopped half-way resumes one page before where it
stopped (the dedup key drops the repeats), not at the window's start. Keepit logs our
own API reads too: they are marked, and not stored when `KEEPIT_STORE_OWN_READS` is off.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

from django.conf import settings

from backups.jobs import HISTORY_DAYS
from backups.known import KnownJobDays, StoredStatus, known_job_days, seat_reads, stored_statuses
from backups.models import JobOutcome
from backups.snapshot import (
    AccountSnapshot,
    AuditBatch,
    AuditError,
    ConnectorSnapshot,
    CredentialSnapshot,
    JobDaySnapshot,
    JobFailureSnapshot,
    SyncProgress,
)
from integrations.models import Connection

from .client import AUDIT_PAGE_SIZE, KeepitClient
from .errors import KeepitError, KeepitNotFound, KeepitProtocolError
from .fixes import Fix
from .mapping import (
    connector_fix,
    connector_snapshot,
    event_snapshot,
    seat_snapshots,
    violation_snapshots,
)
from .schemas import (
    AuditRecord,
    BackupSummary,
    ChildAccount,
    Connector,
    ConnectorHealth,
    DeviceStatus,
    Job,
    JobCounts,
    SeatResource,
    SeatViolation,
)

BATCH_SIZE = 1000
AUDIT_QUEUE_BATCHES = 4
# Keepit does not say whether the filter's bounds are inclusive: consecutive slices
# overlap by this much so no boundary record falls between two (dedup drops the repeat).
SLICE_OVERLAP = timedelta(seconds=1)

T = TypeVar("T")
R = TypeVar("R")
Slice = tuple[datetime, datetime]


DAY = timedelta(days=1)
# A connector that stays unhealthy has its device status read again this often.
STATUS_REFRESH = timedelta(hours=6)


@dataclass(frozen=True)
class JobWindow:
    """One UTC day's job counts to read: [start, end). `closed`: read after the day
    ended. `new`: a day read before, whose new failures get their job history read (a
    day read for the first time in the past fills the history only)."""

    day: date
    start: datetime
    end: datetime
    closed: bool
    new: bool = True


@dataclass
class ConnectorTask:
    account: str
    connector: Connector
    need_health: bool
    need_status: bool
    history: list[JobWindow]


@dataclass
class ConnectorResult:
    health: ConnectorHealth | None = None
    status: DeviceStatus | None = None
    jobs: dict[date, list[Job]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


@dataclass
class AccountReading:
    """What one account's calls returned this sync."""

    child: ChildAccount
    connectors: list[Connector] | None = None
    summaries: dict[str, BackupSummary] = field(default_factory=dict)
    health: dict[str, ConnectorHealth] = field(default_factory=dict)
    health_failed: bool = False
    statuses: dict[str, DeviceStatus] = field(default_factory=dict)
    windows: list[JobWindow] = field(default_factory=list)
    counts: dict[date, dict[str, JobCounts]] = field(default_factory=dict)
    jobs: dict[tuple[str, date], list[Job]] = field(default_factory=dict)
    seats: list[SeatResource] | None = None
    errors: list[str] = field(default_factory=list)
    health_fallbacks: int = 0
    status_reads: int = 0
    job_history_reads: int = 0

    def failure_count(self, day: date, guid: str) -> int:
        counts = self.counts.get(day, {}).get(guid)
        return counts.incomplete + counts.unsuccessful if counts else 0

    def merge(self, task: ConnectorTask, result: ConnectorResult) -> None:
        guid = task.connector.guid
        if task.need_health:
            self.health_fallbacks += 1
            if result.health is not None:
                self.health[guid] = result.health
        if result.status is not None:
            self.statuses[guid] = result.status
        self.status_reads += int(task.need_status)
        self.job_history_reads += len(task.history)
        for day, jobs in result.jobs.items():
            self.jobs[(guid, day)] = jobs
        if result.errors and not self.errors:
            self.errors.append(result.errors[0])


def job_failure(jobs: list[Job], counts: JobCounts) -> JobFailureSnapshot | None:
    """The latest backup job that failed or ended with an error, from a day's history.
    Keepit marks no job "incomplete"; a finished job with an error is taken as one when
    the day's counts have incomplete jobs."""
    failed = [
        job
        for job in jobs
        if job.ended is not None
        and (job.state == "failed" or (job.error and job.state == "succeeded"))
    ]
    if not failed:
        return None
    latest = max(failed, key=lambda job: job.ended or datetime.min.replace(tzinfo=UTC))
    assert latest.ended is not None
    if latest.state == "failed" or not counts.incomplete:
        outcome = JobOutcome.FAILED if latest.state == "failed" else JobOutcome.INCOMPLETE
    else:
        outcome = JobOutcome.INCOMPLETE
    return JobFailureSnapshot(at=latest.ended, outcome=outcome, error=latest.error)


class KeepitCollector:
    """One sync's reading of one connection (see the module docstring)."""

    def __init__(
        self,
        client: KeepitClient,
        *,
        connection: Connection,
        parent_guid: str,
        sync_state: dict[str, Any],
        now: datetime,
        progress: SyncProgress,
    ) -> None:
        self.client = client
        self.connection = connection
        self.parent_guid = parent_guid
        self.state = dict(sync_state)
        self.now = now
        self.progress = progress
        self.own_reads_skipped = 0
        # What the provider knows that the ingest does not (merged into the run's counts).
        self.counts: dict[str, int] = {}
        # What could not be read that belongs to no account.
        self.problems: list[str] = []
        self.credential: CredentialSnapshot | None = None
        self.known = KnownJobDays()
        self.stored: dict[str, StoredStatus] = {}
        self.seats_read: dict[str, datetime | None] = {}
        self.violations: dict[str, list[SeatViolation]] | None = None

    # --- inventory -----------------------------------------------------------------------

    def _fan_out(self, phase: str, func: Callable[[T], R], items: list[T]) -> Iterator[tuple[T, R]]:
        """Run `func` over `items` with bounded concurrency, yielding in completion order
        on the calling thread (which reports progress). If the run stops (time limit,
        crash), the requests not yet started are cancelled instead of being sent."""
        total = len(items)
        self.progress(phase, 0, total)
        workers = max(1, settings.KEEPIT_HTTP_CONCURRENCY)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="keepit")
        finished = False
        try:
            futures = {pool.submit(func, item): item for item in items}
            for done, future in enumerate(as_completed(futures), start=1):
                yield futures[future], future.result()
                if done % 10 == 0 or done == total:
                    self.progress(phase, done, total)
            finished = True
        finally:
            pool.shutdown(wait=finished, cancel_futures=not finished)

    def accounts(self) -> list[AccountSnapshot]:
        """Every child account with its connectors, statuses, job days and seats (raises
        KeepitError when the child list itself cannot be read)."""
        self.progress.phase = "the customer accounts"
        children = self.client.child_accounts(self.parent_guid)
        self.counts["accounts_seen"] = len(children)
        today = self.now.date()
        self.known = known_job_days(self.connection, today=today)
        self.stored = stored_statuses(self.connection)
        self.seats_read = seat_reads(self.connection)
        self.violations = self._seat_violations()
        self.credential = self._credential()
        readings: dict[str, AccountReading] = {}
        self.progress.phase = "the customer accounts (connectors, health, backup jobs, seats)"
        for child, reading in self._fan_out("accounts", self._read_account, children):
            readings[child.id] = reading
        tasks = [task for reading in readings.values() for task in self._connector_tasks(reading)]
        self.progress.phase = "the connectors' health, status and job history"
        for task, result in self._fan_out("connectors", self._read_connector, tasks):
            readings[task.account].merge(task, result)
        for name in ("health_fallbacks", "status_reads", "job_history_reads"):
            self.counts[name] = sum(getattr(r, name) for r in readings.values())
        return [self._snapshot(readings[child.id]) for child in children]

    # The reads per account, then per connector -------------------------------------------

    def _read_account(self, child: ChildAccount) -> AccountReading:
        """Connectors and backup summary; when it has connectors, their health in one
        call and the job counts of the day(s) due; its seats when due."""
        reading = AccountReading(child=child)
        try:
            reading.connectors = self.client.connectors(child.id)
            reading.summaries = {s.guid: s for s in self.client.backup_summary(child.id)}
        except KeepitError as exc:
            reading.connectors = None
            reading.errors.append(str(exc))
            return reading
        if reading.connectors:
            try:
                found = self.client.connectors_health(child.id)
            except (KeepitNotFound, KeepitProtocolError):
                found = None  # not offered as Keepit documents it: ask per connector
            except KeepitError as exc:
                reading.errors.append(f"connector health: {exc}")
                reading.health_failed = True
                found = None
            if found is not None:
                reading.health.update(found)
            for window in self._job_windows(child):
                try:
                    counts = self.client.job_counts(child.id, start=window.start, end=window.end)
                except KeepitError as exc:
                    reading.errors.append(f"backup job counts of {window.day:%Y-%m-%d}: {exc}")
                    continue
                reading.windows.append(window)
                reading.counts[window.day] = counts
        checked = self.seats_read.get(child.id)
        refresh = timedelta(hours=settings.KEEPIT_SEATS_REFRESH_HOURS)
        if checked is None or self.now - checked >= refresh:
            try:
                reading.seats = self.client.seat_usage(child.id)
            except KeepitError as exc:
                reading.errors.append(f"seat usage: {exc}")
        return reading

    def _job_windows(self, child: ChildAccount) -> list[JobWindow]:
        """The UTC days whose job counts this sync reads for an account: today — or, at
        the first sync `KEEPIT_JOB_DAY_SETTLE_MINUTES` after midnight, yesterday one last
        time (closed) — plus up to `KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC` older days not yet
        read, newest first, back to 28 days or the account's creation."""
        now = self.now
        today = now.date()
        midnight = datetime.combine(today, time(), tzinfo=UTC)
        settle = timedelta(minutes=settings.KEEPIT_JOB_DAY_SETTLE_MINUTES)
        yesterday = today - timedelta(days=1)
        account = child.id
        windows: list[JobWindow] = []
        if (
            self.known.read(account, yesterday)
            and not self.known.closed(account, yesterday)
            and now >= midnight + settle
        ):
            windows.append(JobWindow(yesterday, midnight - DAY, midnight, closed=True))
        else:
            windows.append(JobWindow(today, midnight, now, closed=False))
        budget = settings.KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC
        born = child.created.date() if child.created else None
        day = yesterday
        while budget > 0 and day > today - timedelta(days=HISTORY_DAYS):
            if born is not None and day < born:
                break
            if day != windows[0].day and not self.known.read(account, day):
                start = datetime.combine(day, time(), tzinfo=UTC)
                windows.append(
                    JobWindow(
                        day, start, start + DAY, closed=now >= start + DAY + settle, new=False
                    )
                )
                budget -= 1
            day -= timedelta(days=1)
        return windows

    def _connector_tasks(self, reading: AccountReading) -> list[ConnectorTask]:
        """The per-connector calls an account needs: health where the account-wide call
        did not give it, the device status of a connector that is not healthy (when its
        health changed, or every few hours), the job history where a job failed or
        ended incomplete since the last sync."""
        tasks = []
        for connector in reading.connectors or []:
            guid = connector.guid
            need_health = guid not in reading.health and not reading.health_failed
            history = [
                window
                for window in reading.windows
                if window.new
                and reading.failure_count(window.day, guid)
                > self.known.failures.get((guid, window.day), 0)
            ]
            health = reading.health.get(guid)
            need_status = health is not None and self._status_due(guid, health)
            if need_health or need_status or history:
                tasks.append(
                    ConnectorTask(reading.child.id, connector, need_health, need_status, history)
                )
        return tasks

    def _status_due(self, guid: str, health: ConnectorHealth) -> bool:
        if health.health == "healthy":
            return False
        stored = self.stored.get(guid)
        if stored is None or (stored.health, stored.reason) != (health.health, health.reason):
            return True
        checked = stored.error_checked_at
        return checked is None or self.now - checked >= STATUS_REFRESH

    def _read_connector(self, task: ConnectorTask) -> ConnectorResult:
        result = ConnectorResult()
        account, guid = task.account, task.connector.guid
        if task.need_health:
            try:
                result.health = self.client.connector_health(account, guid)
            except KeepitError as exc:
                result.errors.append(str(exc))
        if result.health is not None and self._status_due(guid, result.health):
            task.need_status = True
        if task.need_status:
            try:
                result.status = self.client.device_status(account, guid)
            except KeepitNotFound:
                result.status = DeviceStatus(status="0", error_code="")
            except KeepitError as exc:
                result.errors.append(f"status of {task.connector.name}: {exc}")
        for window in task.history:
            try:
                jobs = self.client.job_history(account, guid, start=window.start, end=window.end)
            except KeepitError as exc:
                result.errors.append(f"job history of {task.connector.name}: {exc}")
                continue
            result.jobs[window.day] = [job for job in jobs if job.is_backup]
        return result

    # Per connection ----------------------------------------------------------------------

    def _seat_violations(self) -> dict[str, list[SeatViolation]] | None:
        """Every account over a seat limit, in one partner-wide call (None: unreadable)."""
        self.progress.phase = "the seat-limit violations"
        try:
            found = self.client.seat_violations(self.parent_guid)
        except KeepitError as exc:
            self.problems.append(f"The seat-limit violations could not be read: {exc}")
            return None
        by_account: dict[str, list[SeatViolation]] = {}
        for violation in found:
            by_account.setdefault(violation.account, []).append(violation)
        return by_account

    def _credential(self) -> CredentialSnapshot | None:
        """The expiry and last use of the token the connection signs in with."""
        self.progress.phase = "the API token"
        kind = self.client.credential_kind
        try:
            caller = self.client.who_am_i()
            tokens = self.client.tokens(caller)
        except KeepitError as exc:
            self.problems.append(f"The API token's expiry could not be read: {exc}")
            return None
        login = self.client.login.casefold()
        mine = [token for token in tokens if token.aname.casefold() == login]
        if not mine:
            return CredentialSnapshot(
                kind=kind,
                found=False,
                note="Keepit lists no token for this login, so its expiry is unknown.",
            )
        token = max(mine, key=lambda t: t.created or datetime.min.replace(tzinfo=UTC))
        return CredentialSnapshot(
            kind=kind, expires_at=token.expires_at, last_used_at=token.last_used
        )

    # Snapshots ---------------------------------------------------------------------------

    def _snapshot(self, reading: AccountReading) -> AccountSnapshot:
        child = reading.child
        violations = None if self.violations is None else self.violations.get(child.id, [])
        return AccountSnapshot(
            external_id=child.id,
            company_name=child.company_name,
            contact_name=child.full_name,
            email=child.email,
            connectors=None
            if reading.connectors is None
            else tuple(self._connector_snapshot(reading, c) for c in reading.connectors),
            error="; ".join(reading.errors),
            deletion_scheduled_at=child.deletion_deadline,
            seats=seat_snapshots(reading.seats, violations or []),
            seat_violations=None
            if reading.seats is not None or violations is None
            else violation_snapshots(violations),
        )

    def _connector_snapshot(
        self, reading: AccountReading, connector: Connector
    ) -> ConnectorSnapshot:
        guid = connector.guid
        health = reading.health.get(guid)
        summary = reading.summaries.get(guid)
        fix, checked = None, None
        if health is not None:
            status = reading.statuses.get(guid)
            stored = self.stored.get(guid)
            if status is not None:
                fix = connector_fix(connector, health, status.error_code, status.status)
                checked = self.now
            elif health.health != "healthy" and stored is not None and stored.error_code:
                # Not asked again this time: the code read earlier stands.
                fix = Fix(stored.error_code, stored.fix_text, stored.help_url)
                checked = stored.error_checked_at
            else:
                fix = connector_fix(connector, health, "")
                checked = stored.error_checked_at if stored and health.health != "healthy" else None
        jobs = tuple(self._job_day(reading, window, guid, summary) for window in reading.windows)
        return connector_snapshot(
            connector, summary, health, fix=fix, error_checked_at=checked, jobs=jobs
        )

    def _job_day(
        self,
        reading: AccountReading,
        window: JobWindow,
        guid: str,
        summary: BackupSummary | None,
    ) -> JobDaySnapshot:
        counts = reading.counts[window.day].get(guid, JobCounts(name="backup"))
        last_end = None
        snapshot_at = summary.last_snapshot_time if summary is not None else None
        if snapshot_at is not None and snapshot_at.date() == window.day:
            last_end = snapshot_at  # a snapshot is written as a job ends
        failure = None
        new_failures = counts.incomplete + counts.unsuccessful > self.known.failures.get(
            (guid, window.day), 0
        )
        jobs = reading.jobs.get((guid, window.day))
        if jobs is not None:
            ended = [job.ended for job in jobs if job.ended is not None]
            if ended:
                last_end = max(ended)
            failure = job_failure(jobs, counts)
        if failure is None and window.new and new_failures:
            # Keepit counted a failure its job history did not show (or could not be
            # read): known to have happened by now, error unknown.
            outcome = JobOutcome.FAILED if counts.unsuccessful else JobOutcome.INCOMPLETE
            failure = JobFailureSnapshot(at=self.now, outcome=outcome)
        return JobDaySnapshot(
            day=window.day,
            successful=counts.successful,
            incomplete=counts.incomplete,
            unsuccessful=counts.unsuccessful,
            cancelled=counts.cancelled,
            in_progress=counts.in_progress,
            closed=window.closed,
            last_job_end_at=last_end,
            failure=failure,
        )

    # --- audit log -------------------------------------------------------------------------

    def _window(self) -> Slice:
        end = self.now
        oldest = end - timedelta(days=settings.KEEPIT_AUDIT_WINDOW_DAYS)
        cursor_text = self.state.get("audit_cursor")
        start = oldest
        if cursor_text:
            cursor = datetime.fromisoformat(cursor_text)
            start = max(oldest, cursor - timedelta(minutes=settings.KEEPIT_AUDIT_OVERLAP_MINUTES))
        return start, end

    def slices(self) -> list[Slice]:
        """The window cut into `KEEPIT_AUDIT_SLICE_HOURS` slices, oldest first."""
        start, end = self._window()
        step = timedelta(hours=settings.KEEPIT_AUDIT_SLICE_HOURS)
        slices: list[Slice] = []
        while start < end:
            stop = min(start + step, end)
            slices.append((start - SLICE_OVERLAP if slices else start, stop))
            start = stop
        return slices

    def _resume_point(self) -> tuple[datetime, datetime, int] | None:
        """The slice a stopped run was reading and the page to start again at (one page
        early), if that slice is still inside the window."""
        resume = self.state.get("audit_resume")
        if not isinstance(resume, dict):
            return None
        try:
            start = datetime.fromisoformat(resume["from"])
            end = datetime.fromisoformat(resume["to"])
            offset = int(resume["offset"])
        except (KeyError, TypeError, ValueError):
            return None
        oldest = self.now - timedelta(days=settings.KEEPIT_AUDIT_WINDOW_DAYS)
        if start < oldest or end > self.now or offset <= 0:
            return None
        return start, end, max(0, offset - AUDIT_PAGE_SIZE)

    def audit(self) -> Generator[AuditBatch, None, None]:
        """The audit log as batches, each with the sync state to commit with it. Raises
        AuditError (with a sentence) when Keepit stops answering as it should."""
        resume = self._resume_point()
        if resume is not None:
            start, end, offset = resume
            phase = f"the audit log (resuming the slice from {start:%Y-%m-%d %H:%M} UTC)"
            yield from self._slice(start, end, offset=offset, phase=phase)
        slices = self.slices()
        for number, (start, end) in enumerate(slices, start=1):
            phase = (
                f"the audit log (slice {number} of {len(slices)}, from {start:%Y-%m-%d %H:%M} UTC)"
            )
            yield from self._slice(start, end, offset=0, phase=phase)

    def _state_after(
        self, start: datetime, end: datetime, next_offset: int | None
    ) -> dict[str, Any]:
        if next_offset is None:  # the slice is complete: the cursor moves on
            self.state.pop("audit_resume", None)
            self.state["audit_cursor"] = end.isoformat()
        else:
            self.state["audit_resume"] = {
                "from": start.isoformat(),
                "to": end.isoformat(),
                "offset": next_offset,
            }
        return dict(self.state)

    def _slice(
        self, start: datetime, end: datetime, *, offset: int, phase: str
    ) -> Iterator[AuditBatch]:
        """One slice: a reader thread streams its pages in batches through a bounded
        queue while the consumer stores them."""
        self.progress.phase = phase
        batches: queue.Queue[tuple[list[AuditRecord], int | None] | BaseException | None] = (
            queue.Queue(maxsize=AUDIT_QUEUE_BATCHES)
        )
        stop = threading.Event()

        def hand_over(item: tuple[list[AuditRecord], int | None] | BaseException | None) -> bool:
            while not stop.is_set():
                try:
                    batches.put(item, timeout=0.5)
                    return True
                except queue.Full:
                    continue
            return False

        def reader() -> None:
            batch: list[AuditRecord] = []
            try:
                for page in self.client.audit_pages(
                    self.parent_guid, start=start, end=end, recursive=True, offset=offset
                ):
                    batch.extend(page.records)
                    if len(batch) >= BATCH_SIZE or page.next_offset is None:
                        if not hand_over((batch, page.next_offset)):
                            return
                        batch = []
                hand_over(None)
            except BaseException as exc:  # handed to the consumer, which decides
                hand_over(exc)

        thread = threading.Thread(target=reader, name="keepit-audit-reader", daemon=True)
        thread.start()
        own_login = self.client.login
        store_own = settings.KEEPIT_STORE_OWN_READS
        try:
            while True:
                item = batches.get()
                if item is None:
                    return
                if isinstance(item, KeepitError):
                    raise AuditError(str(item)) from item
                if isinstance(item, BaseException):
                    raise item
                records, next_offset = item
                events = []
                for record in records:
                    event = event_snapshot(record, own_login=own_login)
                    if event is None:
                        continue
                    if event.is_own_read and not store_own:
                        self.own_reads_skipped += 1
                        continue
                    events.append(event)
                yield AuditBatch(
                    events=events,
                    sync_state=self._state_after(start, end, next_offset),
                    seen=len(records),
                    phase=phase,
                )
        finally:
            # However this ends (time limit, crash, the consumer closing us), the reader
            # stops and lets go.
            stop.set()
            while not batches.empty():
                batches.get_nowait()
            thread.join(timeout=2)
