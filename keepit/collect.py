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
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings

from backups.snapshot import AccountSnapshot, AuditBatch, AuditError, SyncProgress

from .client import AUDIT_PAGE_SIZE, KeepitClient
from .errors import KeepitError
from .mapping import account_snapshot, event_snapshot
from .schemas import AuditRecord, BackupSummary, ChildAccount, Connector, ConnectorHealth

BATCH_SIZE = 1000
AUDIT_QUEUE_BATCHES = 4
# Keepit does not say whether the filter's bounds are inclusive: consecutive slices
# overlap by this much so no boundary record falls between two (dedup drops the repeat).
SLICE_OVERLAP = timedelta(seconds=1)

T = TypeVar("T")
R = TypeVar("R")
Slice = tuple[datetime, datetime]


class KeepitCollector:
    """One sync's reading of one connection (see the module docstring)."""

    def __init__(
        self,
        client: KeepitClient,
        *,
        parent_guid: str,
        sync_state: dict[str, Any],
        now: datetime,
        progress: SyncProgress,
    ) -> None:
        self.client = client
        self.parent_guid = parent_guid
        self.state = dict(sync_state)
        self.now = now
        self.progress = progress
        self.own_reads_skipped = 0
        # What the provider knows that the ingest does not (merged into the run's counts).
        self.counts: dict[str, int] = {}

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
                if done % 50 == 0 or done == total:
                    self.progress(phase, done, total)
            finished = True
        finally:
            pool.shutdown(wait=finished, cancel_futures=not finished)

    def accounts(self) -> list[AccountSnapshot]:
        """Every child account with its connectors and statuses (raises KeepitError when
        the child list itself cannot be read)."""
        self.progress.phase = "the customer accounts"
        children = self.client.child_accounts(self.parent_guid)
        self.counts["accounts_seen"] = len(children)
        read: dict[str, tuple[list[Connector] | None, dict[str, BackupSummary], str]] = {}

        def read_account(
            child: ChildAccount,
        ) -> tuple[list[Connector] | None, dict[str, BackupSummary], str]:
            try:
                connectors = self.client.connectors(child.id)
                summary = {s.guid: s for s in self.client.backup_summary(child.id)}
            except KeepitError as exc:
                return None, {}, str(exc)
            return connectors, summary, ""

        for child, found in self._fan_out("accounts", read_account, children):
            read[child.id] = found
        health: dict[str, dict[str, ConnectorHealth]] = {child.id: {} for child in children}
        errors = {guid: error for guid, (_c, _s, error) in read.items() if error}
        jobs = [
            (child.id, connector.guid)
            for child in children
            for connector in read[child.id][0] or []
        ]

        def read_health(job: tuple[str, str]) -> ConnectorHealth | KeepitError:
            try:
                return self.client.connector_health(job[0], job[1])
            except KeepitError as exc:
                return exc

        for (account, connector), answer in self._fan_out("health", read_health, jobs):
            if isinstance(answer, KeepitError):
                errors.setdefault(account, str(answer))
            else:
                health[account][connector] = answer
        return [
            account_snapshot(
                child,
                read[child.id][0],
                read[child.id][1],
                health[child.id],
                error=errors.get(child.id, ""),
            )
            for child in children
        ]

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
