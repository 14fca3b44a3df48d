"""Reading Keepit's inventory for one sync (keepit-api.md Parts A and C): accounts and
their connectors, health, backup jobs, device status, seats, and the connection's own
token. It writes no table: it returns snapshots (backups/snapshot.py).

**Per connection**: the child list (v3, `all=1`: with contacts and the deletion date of
accounts scheduled for deletion; its failure fails the run), the seat-limit violations of
every account (one partner-wide call) and the token (who am I, then its tokens).

**Per account with connectors** (bounded concurrency, `KEEPIT_HTTP_CONCURRENCY`):
backup summary, every connector's health in one call, and the backup job counts of the
UTC day due (`job_windows`); its seat usage once a day. Its connector list (names,
accessibility, deletion schedule) when it is due (`list_due`: once an hour, at the
account's own moment of it), at Sync now (`fresh`), or when the health, the summary or the
job counts name a connector that is not stored, or the health leaves a stored one out
(`list_changed`: one more request, only then); otherwise the stored list stands. An
account without stored connectors has its list read every sync, as it did.

**Per connector, only when needed**: health where the account-wide call did not give it;
the device status (Keepit's error code) of a connector that is not healthy, when its
health changed and at most every `STATUS_REFRESH`; the job history where the count of
unsuccessful + incomplete jobs rose since the last sync (or an earlier history read could
not say what failed), for the job's error and end. So requests grow with failures, not
with connectors.

What could not be read stays as it was: an account whose connectors failed has
`connectors=None`, a connector whose health failed `status=None`, a day whose counts
failed no reading. A Part C read that Keepit refuses (401/403: the token lacks the
permission) or does not know (404) is "not available": said once in the run's notes,
never a failed account — an older token without, say, DevJobsCount must not make every
sync partial. If the run stops half-way (time limit, crash), the requests not yet sent
are cancelled.
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

from django.conf import settings

from backups.jobs import HISTORY_DAYS
from backups.known import (
    KnownJobDays,
    StoredConnectorList,
    StoredStatus,
    excluded_accounts,
    known_job_days,
    seat_reads,
    stored_connector_lists,
    stored_statuses,
)
from backups.models import JobOutcome
from backups.snapshot import (
    AccountPlan,
    AccountSnapshot,
    ConnectorSnapshot,
    CredentialSnapshot,
    JobDaySnapshot,
    JobFailureSnapshot,
    SyncProgress,
)
from integrations.models import Connection

from .client import KeepitClient
from .errors import KeepitAuthError, KeepitError, KeepitNotFound, KeepitProtocolError
from .fixes import Fix
from .mapping import connector_fix, connector_snapshot, seat_snapshots, violation_snapshots
from .schemas import (
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

T = TypeVar("T")
R = TypeVar("R")
DAY = timedelta(days=1)
# A connector that stays unhealthy has its device status read again this often.
STATUS_REFRESH = timedelta(hours=6)
# Refusals that mean "this read is not available to these credentials" (not a failure).
UNAVAILABLE = (KeepitAuthError, KeepitNotFound)


@dataclass(frozen=True)
class JobWindow:
    """One UTC day's job counts to read: [start, end). `closed`: read after the day
    settled, so final. `new`: its new failures get their job history read (a past day
    read only to fill the 28-day history does not alert)."""

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
    status_read: bool = False
    jobs: dict[date, list[Job]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)


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
    unavailable: dict[str, str] = field(default_factory=dict)
    health_fallbacks: int = 0
    status_reads: int = 0
    job_history_reads: int = 0
    # Its connector list was read this sync (not taken from what is stored).
    connector_lists_read: int = 0
    # Its list was read because it was due (not because its health showed a change).
    list_due: bool = False
    # Its seat-limit violations from the partner-wide call (None: that call failed).
    violations: list[SeatViolation] | None = None

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
        self.status_reads += int(result.status_read)
        self.job_history_reads += len(task.history)
        for day, jobs in result.jobs.items():
            self.jobs[(guid, day)] = jobs
        for name, sentence in result.unavailable.items():
            self.unavailable.setdefault(name, sentence)
        if result.errors and not self.errors:
            self.errors.append(result.errors[0])


def job_failure(jobs: list[Job], counts: JobCounts) -> JobFailureSnapshot | None:
    """The latest backup job of a day's history that failed or ended with an error.
    Keepit marks no job "incomplete": a succeeded job carrying an error (its execution
    summary or fail_reason) is one, as the day's counts confirm."""
    failed = [
        job
        for job in jobs
        if job.ended is not None
        and (job.state == "failed" or (job.state == "succeeded" and bool(job.problem)))
    ]
    if not failed:
        return None
    latest = max(failed, key=lambda job: job.ended or datetime.min.replace(tzinfo=UTC))
    assert latest.ended is not None
    outcome = JobOutcome.FAILED if latest.state == "failed" else JobOutcome.INCOMPLETE
    error = latest.error if latest.state == "failed" else latest.problem
    return JobFailureSnapshot(at=latest.ended, outcome=outcome, error=error, exact=True)


class InventoryReader:
    """One sync's reading of one connection's inventory (see the module docstring)."""

    def __init__(
        self,
        client: KeepitClient,
        *,
        connection: Connection,
        parent_guid: str,
        now: datetime,
        progress: SyncProgress,
        fresh: bool = False,
    ) -> None:
        self.client = client
        self.connection = connection
        self.parent_guid = parent_guid
        self.now = now.astimezone(UTC)
        self.progress = progress
        self.counts: dict[str, int] = {}
        # Run-level sentences: what could not be read that belongs to no account ...
        self.problems: list[str] = []
        # ... and the Part C reads Keepit does not offer these credentials (name -> why).
        self.unavailable: dict[str, str] = {}
        self.credential: CredentialSnapshot | None = None
        self.known = KnownJobDays()
        self.stored: dict[str, StoredStatus] = {}
        self.seats_read: dict[str, datetime | None] = {}
        self.listed: dict[str, StoredConnectorList] = {}
        # Every account's connector list read, stored or not (Sync now, the command line).
        self.fresh = fresh

    def plan(self) -> list[AccountPlan]:
        """Every child account, listed (raises KeepitError when the child list itself
        cannot be read), with what reading it later needs: the account, whether it is
        excluded, its seat-limit violations. Reads the per-connection calls too (the
        violations of every account in one call, the token)."""
        self.progress.phase = "the customer accounts"
        children = self.client.child_accounts(self.parent_guid)
        self.counts["accounts_seen"] = len(children)
        excluded = excluded_accounts(self.connection)
        self.counts["accounts_excluded"] = sum(1 for c in children if c.id in excluded)
        violations = self._seat_violations()
        self.credential = self._credential()
        plans = []
        for child in children:
            own = None if violations is None else violations.get(child.id, [])
            account = AccountSnapshot(
                external_id=child.id,
                company_name=child.company_name,
                contact_name=child.full_name,
                email=child.email,
                connectors=None,
                deletion_scheduled_at=child.deletion_deadline,
            )
            payload = {
                "child": _child_json(child),
                "excluded": child.id in excluded,
                "violations": None if own is None else [_violation_json(v) for v in own],
            }
            plans.append(AccountPlan(account=account, payload=payload))
        return plans

    def read(
        self, payloads: list[dict[str, Any]], *, progress: SyncProgress | None = None
    ) -> list[AccountSnapshot]:
        """Some planned accounts (`plan()` payloads), read whole: connectors, statuses,
        job days and seats. What is known about them is loaded for them only, so memory
        follows the part, not the fleet. `progress`: the part's (reports go there)."""
        if progress is not None:
            self.progress = progress
        children = [_child_from_json(payload["child"]) for payload in payloads]
        ids = [child.id for child in children]
        self.known = known_job_days(self.connection, today=self.now.date(), accounts=ids)
        self.stored = stored_statuses(self.connection, accounts=ids)
        self.seats_read = seat_reads(self.connection, accounts=ids)
        self.listed = stored_connector_lists(self.connection, accounts=ids)
        violations: dict[str, list[SeatViolation] | None] = {
            child.id: None
            if payload["violations"] is None
            else [_violation_from_json(v) for v in payload["violations"]]
            for child, payload in zip(children, payloads, strict=True)
        }
        # Excluded accounts are listed (their link stays) but not read: their connectors
        # stay as they were, and a failure there cannot make the run partial.
        readings: dict[str, AccountReading] = {
            child.id: AccountReading(child=child, violations=violations[child.id])
            for child, payload in zip(children, payloads, strict=True)
            if payload["excluded"]
        }
        to_read = [
            AccountReading(child=child, violations=violations[child.id])
            for child, payload in zip(children, payloads, strict=True)
            if not payload["excluded"]
        ]
        self.progress.phase = "the customer accounts (connectors, health, backup jobs, seats)"
        for reading in to_read:
            readings[reading.child.id] = reading
        for task, result in self._read_pipelined(to_read):
            readings[task.account].merge(task, result)
        for name in (
            "health_fallbacks",
            "status_reads",
            "job_history_reads",
            "connector_lists_read",
        ):
            self.counts[name] = self.counts.get(name, 0) + sum(
                getattr(r, name) for r in readings.values()
            )
        for reading in readings.values():
            for name, sentence in reading.unavailable.items():
                self.unavailable.setdefault(name, sentence)
        return [self._snapshot(readings[child.id]) for child in children]

    def accounts(self) -> list[AccountSnapshot]:
        """Every child account with its connectors, statuses, job days and seats, in one
        go (raises KeepitError when the child list cannot be read)."""
        return self.read([plan.payload for plan in self.plan()])

    @property
    def notes(self) -> list[str]:
        return [
            f"Keepit does not offer the {name} to these credentials ({why}); Vectis shows "
            "what it can without them."
            for name, why in sorted(self.unavailable.items())
        ]

    # --- per account -----------------------------------------------------------------------

    def _read_account(self, reading: AccountReading) -> None:
        """Connectors (listed, or as stored: see the module docstring) and backup summary;
        when it has connectors, their health in one call and the job counts of the day(s)
        due; its seats when due."""
        child = reading.child
        stored = self._stored_list(child.id)
        try:
            if stored is None:
                reading.connectors = self._list_connectors(reading)
                reading.list_due = True
            reading.summaries = {s.guid: s for s in self.client.backup_summary(child.id)}
            if stored is not None or reading.connectors:
                self._read_health(reading)
                self._read_job_counts(reading)
            if stored is not None:
                changed = self._list_changed(reading, stored)
                reading.connectors = self._list_connectors(reading) if changed else stored
        except KeepitError as exc:
            reading.connectors = None
            reading.errors.append(str(exc))
            return
        checked = self.seats_read.get(child.id)
        refresh = timedelta(hours=settings.KEEPIT_SEATS_REFRESH_HOURS)
        # The seat list carries its own violation flags; without the violations reading
        # (which gives the grace expiry) it would lose them: read both or neither.
        if reading.violations is not None and (checked is None or self.now - checked >= refresh):
            try:
                reading.seats = self.client.seat_usage(child.id)
            except UNAVAILABLE as exc:
                reading.unavailable.setdefault("seat usage", str(exc))
                reading.seats = []  # said once; asked again tomorrow, not every sync
            except KeepitError as exc:
                reading.errors.append(f"seat usage: {exc}")

    def _list_connectors(self, reading: AccountReading) -> list[Connector]:
        connectors = self.client.connectors(reading.child.id)
        reading.connector_lists_read = 1
        return connectors

    def _read_job_counts(self, reading: AccountReading) -> None:
        """The backup job counts of the day(s) due (`job_windows`)."""
        child = reading.child
        for window in self.job_windows(child):
            try:
                counts = self.client.job_counts(child.id, start=window.start, end=window.end)
            except UNAVAILABLE as exc:
                reading.unavailable.setdefault("backup job counts", str(exc))
                break
            except KeepitError as exc:
                reading.errors.append(f"backup job counts of {window.day:%Y-%m-%d}: {exc}")
                continue
            reading.windows.append(window)
            reading.counts[window.day] = counts

    def _read_health(self, reading: AccountReading) -> None:
        """Every connector's health in one call (none found: asked per connector)."""
        try:
            found = self.client.connectors_health(reading.child.id)
        except (KeepitAuthError, KeepitProtocolError):
            found = None  # not offered as Keepit documents it: ask per connector
        except KeepitError as exc:
            reading.errors.append(f"connector health: {exc}")
            reading.health_failed = True
            found = None
        if found is not None:
            reading.health.update(found)

    def _stored_list(self, account: str) -> list[Connector] | None:
        """The account's stored connectors, when its list need not be read this sync: it
        holds connectors and is not due (`list_due`), and this sync was not asked for
        every list (Sync now, the command line: `fresh`)."""
        if self.fresh:
            return None
        listed = self.listed.get(account)
        if (
            listed is None
            or listed.listed_at is None
            or list_due(account, listed_at=listed.listed_at, now=self.now)
            or not listed.connectors
        ):
            return None
        return [connector_from_stored(c) for c in listed.connectors]

    def _list_changed(self, reading: AccountReading, stored: list[Connector]) -> bool:
        return list_changed(
            {connector.guid for connector in stored},
            health=set(reading.health),
            named=set(reading.summaries).union(*(set(c) for c in reading.counts.values())),
        )

    def job_windows(self, child: ChildAccount) -> list[JobWindow]:
        """The UTC days whose job counts this sync reads for an account:

        - today — or, at the first sync `KEEPIT_JOB_DAY_SETTLE_MINUTES` after midnight,
          yesterday one last time (closed), so jobs that ran over midnight count finished;
        - up to `KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC` earlier days, newest first, back to 28
          days or the account's creation: days never read (history only, no alert — except
          yesterday, whose failures are still news) and days read but never closed (a
          sync outage), read again to close them.
        """
        now = self.now
        today = now.date()
        midnight = datetime.combine(today, time(), tzinfo=UTC)
        settle = timedelta(minutes=settings.KEEPIT_JOB_DAY_SETTLE_MINUTES)
        yesterday = today - DAY
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
        born = child.created.astimezone(UTC).date() if child.created else None
        day = yesterday
        while budget > 0 and day > today - timedelta(days=HISTORY_DAYS):
            if born is not None and day < born:
                break
            start = datetime.combine(day, time(), tzinfo=UTC)
            closed = now >= start + DAY + settle
            unread = not self.known.read(account, day)
            reopen = not unread and closed and not self.known.closed(account, day)
            if day != windows[0].day and (unread or reopen):
                new = reopen or day == yesterday
                windows.append(JobWindow(day, start, start + DAY, closed=closed, new=new))
                budget -= 1
            day -= DAY
        return windows

    def _read_pipelined(
        self, readings: list[AccountReading]
    ) -> Iterator[tuple[ConnectorTask, ConnectorResult]]:
        """Each account's calls, then — as soon as they are back — its connectors' (not
        once every account is done: no phase waits for the slowest account). Bounded
        concurrency (`KEEPIT_HTTP_CONCURRENCY` threads); a connector's calls go before
        the next account's, so work in flight finishes first. Yields the connectors'
        results on the calling thread, which reports progress. If the run stops (time
        limit, crash), what is not started is cancelled."""
        workers = max(1, settings.KEEPIT_HTTP_CONCURRENCY)
        total = len(readings)
        waiting_accounts = deque(readings)
        waiting_connectors: deque[ConnectorTask] = deque()
        running: dict[Future[Any], tuple[str, Any]] = {}
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="keepit")
        accounts_done = 0
        finished = False
        self.progress("accounts", 0, total)

        def top_up() -> None:
            while len(running) < workers and (waiting_connectors or waiting_accounts):
                if waiting_connectors:
                    task = waiting_connectors.popleft()
                    running[pool.submit(self._read_connector, task)] = ("connector", task)
                else:
                    reading = waiting_accounts.popleft()
                    running[pool.submit(self._read_account, reading)] = ("account", reading)

        try:
            top_up()
            while running:
                done, _pending = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    kind, item = running.pop(future)
                    result = future.result()
                    if kind == "account":
                        waiting_connectors.extend(self._connector_tasks(item))
                        accounts_done += 1
                        if accounts_done % 10 == 0 or accounts_done == total:
                            self.progress("accounts", accounts_done, total)
                    else:
                        yield item, result
                top_up()
            finished = True
        finally:
            pool.shutdown(wait=finished, cancel_futures=not finished)

    # --- per connector ---------------------------------------------------------------------

    def _connector_tasks(self, reading: AccountReading) -> list[ConnectorTask]:
        """The per-connector calls an account needs (see the module docstring)."""
        tasks = []
        for connector in reading.connectors or []:
            guid = connector.guid
            need_health = guid not in reading.health and not reading.health_failed
            history = [
                window
                for window in reading.windows
                if window.new
                and (
                    reading.failure_count(window.day, guid)
                    > self.known.failures.get((guid, window.day), 0)
                    or (guid, window.day) in self.known.pending
                )
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
        """Runs on a worker thread: it only fills its own result."""
        result = ConnectorResult()
        account, guid = task.account, task.connector.guid
        if task.need_health:
            try:
                result.health = self.client.connector_health(account, guid)
            except KeepitError as exc:
                result.errors.append(str(exc))
        need_status = task.need_status or (
            result.health is not None and self._status_due(guid, result.health)
        )
        if need_status:
            result.status_read = True
            try:
                result.status = self.client.device_status(account, guid)
            except KeepitNotFound:
                result.status = DeviceStatus(status="0", error_code="")
            except KeepitAuthError as exc:
                result.unavailable["device status"] = str(exc)
            except KeepitError as exc:
                result.errors.append(f"status of {task.connector.name}: {exc}")
        for window in task.history:
            try:
                jobs = self.client.job_history(account, guid, start=window.start, end=window.end)
            except UNAVAILABLE as exc:
                result.unavailable["backup job history"] = str(exc)
                continue
            except KeepitError as exc:
                result.errors.append(f"job history of {task.connector.name}: {exc}")
                continue
            result.jobs[window.day] = [job for job in jobs if job.is_backup]
        return result

    # --- per connection --------------------------------------------------------------------

    def _seat_violations(self) -> dict[str, list[SeatViolation]] | None:
        """Every account over a seat limit, in one partner-wide call (None: unreadable)."""
        self.progress.phase = "the seat-limit violations"
        try:
            found = self.client.seat_violations(self.parent_guid)
        except UNAVAILABLE as exc:
            self.unavailable["seat-limit violations"] = str(exc)
            return None
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
        except UNAVAILABLE as exc:
            self.unavailable["token list"] = str(exc)
            return CredentialSnapshot(
                kind=kind, found=False, note="Keepit does not show these credentials' tokens."
            )
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

    # --- snapshots -------------------------------------------------------------------------

    def _snapshot(self, reading: AccountReading) -> AccountSnapshot:
        child = reading.child
        violations = reading.violations
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
            # Recorded when it was due and holds connectors: an account without a connector,
            # or with the setting at 0, is read every sync and writes nothing for it.
            connectors_listed_at=self.now
            if reading.list_due
            and reading.connectors
            and settings.KEEPIT_CONNECTORS_REFRESH_MINUTES
            else None,
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
            same = stored is not None and (stored.health, stored.reason) == (
                health.health,
                health.reason,
            )
            if status is not None:
                fix = connector_fix(connector, health, status.error_code, status.status)
                checked = self.now
            elif health.health != "healthy" and same and stored and stored.error_code:
                # Not asked again this time, nothing changed: the code read earlier stands.
                fix = Fix(stored.error_code, stored.fix_text, stored.help_url, source="status")
                checked = stored.error_checked_at
            else:
                fix = connector_fix(connector, health, "")
                checked = stored.error_checked_at if stored and same else None
        born = connector.created.astimezone(UTC).date() if connector.created else None
        jobs = tuple(
            self._job_day(reading, window, guid, summary)
            for window in reading.windows
            if born is None or window.day >= born  # no "no job" before it existed
        )
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
        if snapshot_at is not None and snapshot_at.astimezone(UTC).date() == window.day:
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
            # read): seen by this sync, error unknown — the history is asked again next time.
            outcome = JobOutcome.FAILED if counts.unsuccessful else JobOutcome.INCOMPLETE
            failure = JobFailureSnapshot(at=self.now, outcome=outcome, exact=False)
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


# --- connector lists --------------------------------------------------------------------------


def list_due(account: str, *, listed_at: datetime, now: datetime) -> bool:
    """Whether an account's connector list, read at `listed_at`, is read again at `now`:
    once its own moment of each `KEEPIT_CONNECTORS_REFRESH_MINUTES` period (a phase
    fixed per account, from its id) has passed since. Each sync so reads the lists whose
    moment fell since the sync before — a steady share, about interval ÷ refresh, never
    all at once (a fixed age per account would bunch: lists read together fall due
    together again) — and none stands longer than the refresh plus one sync interval.
    A refresh of 0: every sync."""
    period = settings.KEEPIT_CONNECTORS_REFRESH_MINUTES * 60
    if period <= 0:
        return True
    phase = zlib.crc32(account.encode()) % period
    return (int(now.timestamp()) + phase) // period > (int(listed_at.timestamp()) + phase) // period


def list_changed(stored: set[str], *, health: set[str], named: set[str]) -> bool:
    """Whether an account's connector list must be read although it is not due: the
    one-call health leaves a stored connector out, or it, the backup summary or the job
    counts (`named`) name one that is not stored (added, removed, moved between
    accounts). A health that could not be read in one call (failed, or not offered)
    names none, so the list is read then too. Names, accessibility and deletion
    schedules wait for the list's due reading."""
    return health != stored or not named <= stored


def connector_from_stored(stored: ConnectorSnapshot) -> Connector:
    """A stored connector as its list gave it (`vendor_type` is `type`, or `dsl/<agent>`)."""
    kind, agent = stored.vendor_type, ""
    if kind.startswith("dsl/"):
        kind, agent = "dsl", kind.removeprefix("dsl/")
    return Connector(
        guid=stored.external_id,
        name=stored.name,
        type=kind,
        agent_type=agent,
        created=stored.vendor_created_at,
        accessible=stored.accessible,
        deletion_deadline=stored.deletion_scheduled_at,
    )


# --- plans cross processes as JSON ----------------------------------------------------------


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _child_json(child: ChildAccount) -> dict[str, Any]:
    return {
        "id": child.id,
        "created": _when(child.created),
        "parent_id": child.parent_id,
        "email": child.email,
        "full_name": child.full_name,
        "company_name": child.company_name,
        "deletion_deadline": _when(child.deletion_deadline),
    }


def _child_from_json(data: dict[str, Any]) -> ChildAccount:
    return ChildAccount(
        id=data["id"],
        created=_moment(data["created"]),
        parent_id=data["parent_id"],
        email=data["email"],
        full_name=data["full_name"],
        company_name=data["company_name"],
        deletion_deadline=_moment(data["deletion_deadline"]),
    )


def _violation_json(violation: SeatViolation) -> dict[str, Any]:
    return {
        "account": violation.account,
        "group": violation.group,
        "resource": violation.resource,
        "readable_name": violation.readable_name,
        "limit": violation.limit,
        "usage": violation.usage,
        "grace_expires": _when(violation.grace_expires),
    }


def _violation_from_json(data: dict[str, Any]) -> SeatViolation:
    return SeatViolation(
        account=data["account"],
        group=data["group"],
        resource=data["resource"],
        readable_name=data["readable_name"],
        limit=data["limit"],
        usage=data["usage"],
        grace_expires=_moment(data["grace_expires"]),
    )
