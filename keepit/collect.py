"""Reading Keepit for one sync: the inventory (keepit/inventory.py), then the audit log as
a stream of batches. It writes no table: it returns snapshots (backups/snapshot.py) and
backups/ writes them.

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
from collections.abc import Generator, Iterator
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from backups.snapshot import AccountSnapshot, AuditBatch, AuditError, SyncProgress
from integrations.models import Connection

from .client import AUDIT_PAGE_SIZE, KeepitClient
from .errors import KeepitError
from .inventory import InventoryReader
from .mapping import event_snapshot
from .schemas import AuditRecord

BATCH_SIZE = 1000
AUDIT_QUEUE_BATCHES = 4
# Keepit does not say whether the filter's bounds are inclusive: consecutive slices
# overlap by this much so no boundary record falls between two (dedup drops the repeat).
SLICE_OVERLAP = timedelta(seconds=1)

Slice = tuple[datetime, datetime]


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
        self.inventory = InventoryReader(
            client,
            connection=connection,
            parent_guid=parent_guid,
            now=now,
            progress=progress,
        )

    # --- inventory -----------------------------------------------------------------------

    def accounts(self) -> list[AccountSnapshot]:
        """Every child account with its connectors, statuses, job days and seats
        (keepit/inventory.py); raises KeepitError when the child list cannot be read."""
        try:
            return self.inventory.accounts()
        finally:
            self.counts.update(self.inventory.counts)

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
