"""Reading Keepit for one sync: the inventory (keepit/inventory.py), then the audit log as
a stream of batches. It writes no table: it returns snapshots (backups/snapshot.py) and
backups/ writes them.

**Audit log**: the window (first sync: `KEEPIT_AUDIT_WINDOW_DAYS`; then the cursor minus
`KEEPIT_AUDIT_OVERLAP_MINUTES`) is cut into `KEEPIT_AUDIT_SLICE_HOURS` slices on a fixed
grid, and `KEEPIT_AUDIT_CONCURRENCY` reader threads read them at once, oldest first, each
following `next-offset` to the slice's end. Their pages reach the consumer (the sync,
storing them) in batches through one bounded queue, so memory stays flat. Every batch
carries the sync state to commit with it, as far as what has been stored: the cursor
(`audit_cursor`) moves only over the slices complete from the window's start, and each
slice in progress keeps the page to resume at (`audit_resume`). A run stopped half-way
therefore never skips a record (a slice after the cursor is read again unless it can
resume) and never stores one twice (the dedup key drops the repeats). Keepit logs our
own API reads too: they are marked, and not stored when `KEEPIT_STORE_OWN_READS` is off.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings

from backups.snapshot import AccountPlan, AccountSnapshot, AuditBatch, AuditError, SyncProgress
from integrations.models import Connection

from .client import AUDIT_PAGE_SIZE, KeepitClient
from .errors import KeepitError
from .inventory import InventoryReader
from .mapping import event_snapshot
from .schemas import AuditRecord

# Records stored per transaction: big enough to go by COPY (integrations/sql.py), small
# enough that a stopped run re-reads little.
BATCH_SIZE = 2400
AUDIT_QUEUE_BATCHES = 4
# Keepit does not say whether the filter's bounds are inclusive: consecutive slices
# overlap by this much so no boundary record falls between two (dedup drops the repeat).
SLICE_OVERLAP = timedelta(seconds=1)

Slice = tuple[datetime, datetime]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
        fresh: bool = False,
    ) -> None:
        self.client = client
        self.connection = connection
        self.parent_guid = parent_guid
        self.state = dict(sync_state)
        self.now = now
        self.progress = progress
        self.reader: AuditReader | None = None
        # What the provider knows of the audit log that the ingest does not.
        self.audit_counts: dict[str, int] = {"own_reads_skipped": 0}
        # What the provider knows that the ingest does not (merged into the run's counts).
        self.counts: dict[str, int] = {}
        self.inventory = InventoryReader(
            client,
            connection=connection,
            parent_guid=parent_guid,
            now=now,
            progress=progress,
            fresh=fresh,
        )

    # --- inventory -----------------------------------------------------------------------

    def plan(self) -> list[AccountPlan]:
        """Every child account, listed (keepit/inventory.py); raises KeepitError when the
        child list cannot be read."""
        try:
            return self.inventory.plan()
        finally:
            self.counts.update(self.inventory.counts)

    def read_accounts(
        self, payloads: list[dict[str, Any]], progress: SyncProgress
    ) -> list[AccountSnapshot]:
        """Some planned accounts with their connectors, statuses, job days and seats
        (`progress`: the part's, which its reads report to)."""
        try:
            return self.inventory.read(payloads, progress=progress)
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
        """The window cut into `KEEPIT_AUDIT_SLICE_HOURS` slices, oldest first, on a grid
        anchored at the epoch (so a stopped run and the next one cut the same slices, and
        the next can resume a slice at the page it stopped at)."""
        start, end = self._window()
        step = timedelta(hours=settings.KEEPIT_AUDIT_SLICE_HOURS)
        slices: list[Slice] = []
        while start < end:
            grid = EPOCH + ((start - EPOCH) // step + 1) * step
            stop = min(grid, end)
            slices.append((start - SLICE_OVERLAP if slices else start, stop))
            start = stop
        return slices

    def _resume_offsets(self) -> dict[Slice, int]:
        """Slices a stopped run was reading, and the page to start each at again (one page
        early), while they are still inside the window."""
        stored = self.state.get("audit_resume")
        if not isinstance(stored, dict):
            return {}
        if {"from", "to", "offset"} <= stored.keys():  # one slice, as runs before 2026-12 kept it
            stored = {stored["from"]: {"to": stored["to"], "offset": stored["offset"]}}
        oldest = self.now - timedelta(days=settings.KEEPIT_AUDIT_WINDOW_DAYS)
        found: dict[Slice, int] = {}
        for start_text, entry in stored.items():
            try:
                start = datetime.fromisoformat(start_text)
                end = datetime.fromisoformat(entry["to"])
                offset = int(entry["offset"])
            except (KeyError, TypeError, ValueError):
                continue
            if start >= oldest and end <= self.now and offset > 0:
                found[(start, end)] = max(0, offset - AUDIT_PAGE_SIZE)
        return found

    def audit(self) -> Iterator[AuditBatch]:
        """The audit log as batches (the reading starts at once), each with the sync
        state to commit with it. Slices are read concurrently (`KEEPIT_AUDIT_CONCURRENCY`
        at a time, oldest first); each batch carries the state as far as what has been
        stored: the cursor moves only over the slices that are complete from the
        window's start, and a slice in progress keeps the page to resume at. Raises
        AuditError (with a sentence) when Keepit stops answering as it should; what was
        stored stays."""
        resume = self._resume_offsets()
        # A slice a stopped run was reading resumes at its page; one the grid no longer
        # has (the old tail, which ended at the old "now") is covered by the new slices
        # from their start, and the dedup key drops what both read.
        work = [(piece, resume.get(piece, 0)) for piece in self.slices()]
        if not work:
            return iter(())
        self.reader = AuditReader(self, work)
        self.reader.start()
        return self.reader.batches()

    def audit_ready(self) -> bool:
        """A batch of the audit log can be had without waiting (or the log has ended)."""
        return self.reader is None or self.reader.ready()

    def _state_after(self, reader: AuditReader) -> dict[str, Any]:
        """The sync state as far as the batches stored so far reach."""
        if reader.cursor is not None:
            self.state["audit_cursor"] = reader.cursor.isoformat()
        if reader.in_progress:
            self.state["audit_resume"] = {
                start.isoformat(): {"to": end.isoformat(), "offset": offset}
                for (start, end), offset in sorted(reader.in_progress.items())
            }
        else:
            self.state.pop("audit_resume", None)
        return dict(self.state)


@dataclass
class _SliceBatch:
    index: int
    records: list[AuditRecord]
    next_offset: int | None


class AuditReader:
    """Reads the planned slices with a few reader threads, hands their batches to the
    consumer (the sync, storing them) through one bounded queue, and keeps what the
    consumer has been given: the cursor (end of the complete slices from the start of the
    plan) and the slices in progress with their next page. Memory stays flat: at most
    `queue + readers` batches exist at a time."""

    def __init__(self, collector: KeepitCollector, work: list[tuple[Slice, int]]) -> None:
        self.collector = collector
        self.work = work
        self.cursor: datetime | None = None
        self.in_progress: dict[Slice, int] = {}
        self.done: set[int] = set()
        self._contiguous = 0  # slices [0, _contiguous) of the plan are complete
        self._readers = max(1, min(settings.KEEPIT_AUDIT_CONCURRENCY, len(work)))
        self._queue: queue.Queue[_SliceBatch | BaseException | None] = queue.Queue(
            maxsize=AUDIT_QUEUE_BATCHES
        )
        self._next = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._read, name=f"keepit-audit-reader-{n}", daemon=True)
            for n in range(self._readers)
        ]
        self._finished_readers = 0

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def ready(self) -> bool:
        """A batch (or the end, or a failure) can be taken without waiting."""
        with self._queue.mutex:
            items = list(self._queue.queue)
        ends = sum(1 for item in items if item is None)
        return len(items) > ends or self._finished_readers + ends >= len(self._threads)

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= len(self.work) or self._stop.is_set():
                return None
            self._next += 1
            return self._next - 1

    def _hand_over(self, item: _SliceBatch | BaseException | None) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        client = self.collector.client
        parent = self.collector.parent_guid
        try:
            while (index := self._take()) is not None:
                (start, end), offset = self.work[index]
                batch: list[AuditRecord] = []
                for page in client.audit_pages(
                    parent, start=start, end=end, recursive=True, offset=offset
                ):
                    batch.extend(page.records)
                    if len(batch) >= BATCH_SIZE or page.next_offset is None:
                        if not self._hand_over(_SliceBatch(index, batch, page.next_offset)):
                            return
                        batch = []
            self._hand_over(None)
        except BaseException as exc:  # handed to the consumer, which decides
            self._hand_over(exc)

    def _record(self, item: _SliceBatch) -> None:
        piece, _offset = self.work[item.index]
        if item.next_offset is not None:
            self.in_progress[piece] = item.next_offset
            return
        self.in_progress.pop(piece, None)
        self.done.add(item.index)
        while self._contiguous in self.done:
            self.cursor = self.work[self._contiguous][0][1]
            self._contiguous += 1

    def batches(self) -> Iterator[AuditBatch]:
        collector = self.collector
        own_login = collector.client.login
        store_own = settings.KEEPIT_STORE_OWN_READS
        total = len(self.work)
        try:
            while self._finished_readers < len(self._threads):
                item = self._queue.get()
                if item is None:
                    self._finished_readers += 1
                    continue
                if isinstance(item, KeepitError):
                    raise AuditError(str(item)) from item
                if isinstance(item, BaseException):
                    raise item
                events = []
                for record in item.records:
                    event = event_snapshot(record, own_login=own_login)
                    if event is None:
                        continue
                    if event.is_own_read and not store_own:
                        collector.audit_counts["own_reads_skipped"] += 1
                        continue
                    events.append(event)
                self._record(item)
                phase = (
                    f"the audit log ({len(self.done)} of {total} slices complete, "
                    f"the oldest still open from {self._oldest_open():%Y-%m-%d %H:%M} UTC)"
                    if len(self.done) < total
                    else "the audit log"
                )
                collector.progress.phase = phase
                yield AuditBatch(
                    events=events,
                    sync_state=collector._state_after(self),
                    seen=len(item.records),
                    phase=phase,
                )
        finally:
            # However this ends (time limit, crash, the consumer closing us), the readers
            # stop and let go.
            self._stop.set()
            while not self._queue.empty():
                self._queue.get_nowait()
            for thread in self._threads:
                if thread.is_alive():
                    thread.join(timeout=2)

    def _oldest_open(self) -> datetime:
        for index, ((start, _end), _offset) in enumerate(self.work):
            if index not in self.done:
                return start
        return self.work[-1][0][1]
