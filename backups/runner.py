"""One sync of one connection, for every provider: a plan, then parts, then the finish.

1. **Plan** (`start_sync`): claim the connection (integrations.lifecycle: a `running`
   SyncRun; the database refuses a second), ask the provider for its account list and
   store it (account links and customers; connectors of accounts no longer listed are
   marked removed). Then split the work into parts (SyncChunk rows): the accounts in
   parts of `VECTIS_SYNC_CHUNK_ACCOUNTS` (the last ones smaller: `account_part_sizes`),
   and the audit log as one more part. A provider that reads everything at once (no
   `plan`) is stored whole here and only the audit log is a part.
2. **Parts** (`run_part`): each reads its accounts through the provider (connectors,
   statuses, job days, seats) and stores them in one transaction, or streams the audit
   log batch by batch, each batch stored with the provider's sync state (its cursor) so a
   part stopped half-way resumes where it stopped. Under Celery each part is a task, so
   several workers share one large MSP; memory follows the part, not the fleet.
3. **Finish** (`finish_run`, by whoever ends the last part): stored events learn the
   connectors that arrived after them, and the run gets its outcome, counts, requests and
   sentence; listeners (alerts) are told after commit.

`run_sync` does all of it in this process (the `keepit_sync` command, tests, the
benchmark): on PostgreSQL outside a transaction the audit part runs in a process of its
own (`manage.py sync_part`) and each account part is stored by a thread of its own while
the next is read; otherwise (the test suite's transactions, SQLite) the audit log is read
by its own threads while the accounts are read, and this thread stores both as they come.

Outcomes: the vendor unreadable as a whole → `failed` and nothing written; some accounts,
a part or the audit log unreadable → `partial`, naming them, their data untouched; a time
limit → `partial` with a sentence saying what was kept and that the next sync continues;
anything unexpected → `failed` with a sentence (the traceback goes to the log).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db import connection as db
from django.utils import timezone

from integrations.lifecycle import (
    RunHeartbeat,
    claim_chunk,
    claim_sync_run,
    finish_chunk,
    finish_sync_run,
)
from integrations.models import Connection, SyncChunk, SyncRun
from integrations.registry import get_provider, settings_prefixes
from integrations.sql import relax_commit

from .ingest import Ingest
from .models import AccountLink
from .snapshot import (
    AccountSnapshot,
    AuditBatch,
    AuditError,
    CollectError,
    Collection,
    SyncProgress,
    SyncProvider,
)

logger = logging.getLogger(__name__)

# What a part started with `manage.py sync_part --stdin` reads after its settings: a new
# request budget (the run's accounts are read: the audit log may take all of it).
BUDGET_LINE = re.compile(r"budget ([0-9]{1,4})")


def budget_line(size: int) -> str:
    return f"budget {size}\n"


def listen_for_budget(set_budget: Callable[[int], None]) -> None:
    """A thread that sets the part's request budget on each `budget_line` of standard
    input (until it ends: the process that started this one closed it, or died)."""

    def listen() -> None:
        for line in sys.stdin:
            said = BUDGET_LINE.fullmatch(line.strip())
            if said:
                set_budget(max(1, int(said.group(1))))

    threading.Thread(target=listen, name="budget-listener", daemon=True).start()


Progress = Callable[[str, int, int], None]
# Audit batches stored per step while the accounts are being read in this process.
PUMP_BATCHES = 4


@dataclass
class PartResult:
    """How one part ended, as recorded on its SyncChunk row."""

    state: str = SyncChunk.State.DONE
    counts: dict[str, int] = field(default_factory=dict)
    failed_accounts: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    http_requests: int = 0
    error: str = ""
    stopped_early: bool = False
    stored: bool = False

    def record(self, chunk: SyncChunk, *, now: datetime) -> bool:
        """Write it on the part; True when it was the run's last part."""
        return finish_chunk(
            chunk,
            state=self.state,
            now=now,
            counts=self.counts,
            failed_accounts=self.failed_accounts,
            problems=self.problems,
            notes=self.notes,
            http_requests=self.http_requests,
            error=self.error,
            stopped_early=self.stopped_early,
            stored=self.stored,
        )


# --- 1. the plan ---------------------------------------------------------------------------


def start_sync(
    connection: Connection,
    *,
    trigger: str = SyncRun.Trigger.SCHEDULE,
    now: datetime | None = None,
    progress: Progress | None = None,
    provider: SyncProvider | None = None,
) -> tuple[SyncRun, list[SyncChunk], Collection | None]:
    """Claim, plan and split one sync; returns the run, its parts still to do (none when
    it ended while planning: then the run is finished) and the provider's reading (left
    open, for a caller that does the parts in this process; close it). Raises
    `integrations.lifecycle.SyncAlreadyRunning` when another sync holds the claim."""
    started = now or timezone.now()
    source = provider or _sync_provider(connection)
    run = claim_sync_run(connection, trigger=trigger, now=started)
    tracker = SyncProgress(progress)
    ingest = Ingest(connection, now=started)
    collection: Collection | None = None
    plan_part = PartResult(state=SyncChunk.State.DONE, stored=True)
    try:
        with RunHeartbeat(run):
            collection = source.collect(
                connection, now=started, progress=tracker, fresh=_asked_for(run)
            )
            if collection.in_parts:
                assert collection.plan is not None
                plans = collection.plan()
                accounts = [plan.account for plan in plans]
            else:
                plans = []
                accounts = collection.read_inventory()
            tracker.phase = "the account list"
            with transaction.atomic():
                if collection.in_parts:
                    ingest.apply_accounts(accounts)
                else:
                    ingest.apply_inventory(accounts)
                _record_credential(connection, collection, now=started)
                plan_part.counts = {**ingest.counts.as_dict(), **collection.counts}
                plan_part.failed_accounts = _failed(accounts)
                plan_part.problems = list(collection.problems)
                plan_part.notes = collection.notes()
                plan_part.http_requests = collection.requests()
                parts = _create_parts(run, plans, plan_part, now=started)
        return run, parts, collection
    except CollectError as exc:
        error = exc.sentence
        outcome = SyncRun.Outcome.FAILED
    except SoftTimeLimitExceeded:
        error = (
            f"The sync reached its time limit ({settings.CELERY_TASK_SOFT_TIME_LIMIT} s) while "
            f"reading {tracker.phase}, before it could store anything: the data shown is "
            "from the last sync. The next sync starts again; if this repeats, raise "
            "CELERY_TASK_SOFT_TIME_LIMIT."
        )
        outcome = SyncRun.Outcome.FAILED
        logger.warning("Sync of connection %s: %s", connection.pk, error)
    except Exception as exc:
        logger.exception("Sync of connection %s failed unexpectedly", connection.pk)
        error = _unexpected(exc, tracker.phase)
        outcome = SyncRun.Outcome.FAILED
    requests = collection.requests() if collection is not None else 0
    if collection is not None:
        collection.close()
    finish_sync_run(
        run,
        outcome=outcome,
        now=timezone.now(),
        counts=ingest.counts.as_dict(),
        http_requests=requests,
        error=error,
        stored_data=False,
    )
    return run, [], None


# The smallest part the last `VECTIS_SYNC_CHUNK_ACCOUNTS` accounts are cut into.
SMALLEST_TAIL_PART = 25


def account_part_sizes(accounts: int, size: int) -> list[int]:
    """How many accounts each part gets: `size` each, except the last `size` or so,
    which go in parts that halve down to `SMALLEST_TAIL_PART` (500 → 250, 125, 63, 31,
    31). What comes after the last read — storing the last part and linking the audit
    events stored before its connectors — is never overlapped by another read, and
    grows with the part: 4.4 s after the last read of the benchmark's first sync with a
    last part of 500 accounts, 0.2 s with one of 31. With several workers the small
    parts also even out the end."""
    sizes = [size] * (max(0, accounts - size) // size)
    remaining = accounts - sum(sizes)  # fewer than twice size
    while remaining > size or remaining >= 2 * SMALLEST_TAIL_PART:
        part = min(size, (remaining + 1) // 2) if remaining >= 2 * SMALLEST_TAIL_PART else size
        sizes.append(part)
        remaining -= part
    if remaining:
        sizes.append(remaining)
    return sizes


def _create_parts(
    run: SyncRun, plans: list[Any], plan_part: PartResult, *, now: datetime
) -> list[SyncChunk]:
    """The plan itself (done) as part 1, then the account parts, then the audit log."""
    rows = [
        SyncChunk(
            run=run,
            number=0,
            kind=SyncChunk.Kind.PLAN,
            state=SyncChunk.State.DONE,
            accounts=len(plans) or plan_part.counts.get("accounts_seen", 0),
            attempts=1,
            started_at=run.started_at,
            heartbeat_at=now,
            finished_at=timezone.now(),
            counts=plan_part.counts,
            failed_accounts=plan_part.failed_accounts,
            problems=plan_part.problems,
            notes=plan_part.notes,
            http_requests=plan_part.http_requests,
            stored=True,
        )
    ]
    start = 0
    for size in account_part_sizes(len(plans), settings.VECTIS_SYNC_CHUNK_ACCOUNTS):
        piece = plans[start : start + size]
        start += size
        rows.append(
            SyncChunk(
                run=run,
                number=len(rows),
                kind=SyncChunk.Kind.ACCOUNTS,
                payload=[plan.payload for plan in piece],
                account_ids=[plan.account.external_id for plan in piece],
                accounts=len(piece),
                queued_at=now,
            )
        )
    rows.append(SyncChunk(run=run, number=len(rows), kind=SyncChunk.Kind.AUDIT, queued_at=now))
    created = SyncChunk.objects.bulk_create(rows)
    SyncRun.objects.filter(pk=run.pk).update(chunks_total=len(rows), chunks_finished=1)
    run.chunks_total, run.chunks_finished = len(rows), 1
    return [chunk for chunk in created if chunk.state == SyncChunk.State.PENDING]


# --- 2. the parts -------------------------------------------------------------------------


def run_part(
    chunk_id: int,
    *,
    now: datetime | None = None,
    progress: Progress | None = None,
    provider: SyncProvider | None = None,
    budget: int | None = None,
    on_budget: Callable[[Callable[[int], None]], None] | None = None,
) -> SyncRun | None:
    """Do one part in this process (a Celery task): claim it, read and store it, record
    how it ended, and finish the run when it was the last. None when the part was not
    this worker's to do (claimed elsewhere, ended, or its run is over). `budget`: at most
    this many requests in flight (a share of the connection's budget); `on_budget` is
    handed the function that changes it while the part runs."""
    chunk = claim_chunk(chunk_id, now=now or timezone.now())
    if chunk is None:
        return None
    run = chunk.run
    connection = run.connection
    tracker = SyncProgress(progress)
    part: _Part | None = None
    result = PartResult()
    collection: Collection | None = None
    try:
        with RunHeartbeat(run, chunk=chunk):
            source = provider or _sync_provider(connection)
            collection = source.collect(
                connection, now=run.started_at, progress=tracker, fresh=_asked_for(run)
            )
            if budget is not None and collection.budget is not None:
                collection.budget(budget)
            if on_budget is not None and collection.budget is not None:
                on_budget(collection.budget)
            part = _Part(chunk, collection, tracker)
            result = part.result
            if chunk.kind == SyncChunk.Kind.ACCOUNTS:
                part.accounts()
            else:
                part.audit_all()
    except SoftTimeLimitExceeded:
        result.stopped_early = True
        # Audit batches are stored as they come; an account part may be stored already
        # (the time limit came while it linked the audit events of its connectors).
        result.stored = result.stored or chunk.kind == SyncChunk.Kind.AUDIT
        result.error = _time_limit(tracker.phase, kept=result.stored)
        logger.warning("Sync of connection %s: %s", connection.pk, result.error)
    except Exception as exc:
        logger.exception("Part %s of a sync of connection %s failed", chunk.number, connection.pk)
        result.state = SyncChunk.State.FAILED
        result.error = _unexpected(exc, tracker.phase)
    finally:
        if part is not None:
            part.settle()
        if collection is not None:
            result.http_requests = collection.requests()
            collection.close()
    if result.record(chunk, now=timezone.now()):
        return finish_run(run.pk)
    return SyncRun.objects.get(pk=run.pk)


class _Part:
    """One part read through a provider's Collection and stored, step by step, so the
    same code serves a Celery task (one part) and `run_sync` (every part, interleaved)."""

    def __init__(self, chunk: SyncChunk, collection: Collection, tracker: SyncProgress) -> None:
        self.chunk = chunk
        self.collection = collection
        self.tracker = tracker
        self.connection = chunk.run.connection
        self.ingest = Ingest(self.connection, now=chunk.run.started_at)
        self.result = PartResult()
        self._stream: Iterator[AuditBatch] | None = None
        self.done = False
        # A stop was raised while it was storing (it, not another part, was interrupted).
        self.interrupted = False
        self._provider_counts: dict[str, int] = {}
        # Its own link (the events stored before its connectors) failed: left to a relink.
        self.link_failed = False

    # accounts

    def accounts(self) -> None:
        """Read this part's accounts and store them in one transaction."""
        self.store(self.read())

    def read(self) -> list[AccountSnapshot]:
        assert self.collection.read_accounts is not None
        before = dict(self.collection.counts)
        self.tracker.phase = f"the customer accounts (part {self.chunk.number})"
        accounts = self.collection.read_accounts(list(self.chunk.payload), self.tracker)
        self._provider_counts = {k: v - before.get(k, 0) for k, v in self.collection.counts.items()}
        self.result.notes = self.collection.notes()
        return accounts

    def store(self, accounts: list[AccountSnapshot]) -> None:
        self.tracker.phase = "the connectors and backup statuses"
        with transaction.atomic():
            self.ingest.apply_part(accounts)
        self.result.stored = True
        self.result.failed_accounts = _failed(accounts)
        self.done = True
        self.settle()
        # Committed: the audit ingest finds these connectors at its next look-up; the
        # events it stored before get them here, while the next part is read (not at the
        # run's end). What this misses, or a database error leaves, the final relink does.
        self.tracker.phase = "the stored audit events of the connectors just added"
        try:
            self.ingest.link_added_connectors()
        except DatabaseError:
            self.link_failed = True
            logger.warning(
                "Part %s of sync run %s: linking stored audit events to its new connectors "
                "failed; a relink after it does it",
                self.chunk.number,
                self.chunk.run_id,
                exc_info=True,
            )
        self.settle()

    def settle(self) -> None:
        """The part's counts, as far as it got: what was stored, and what the provider
        counted for it (an account part that stopped before storing counts nothing)."""
        if self.chunk.kind == SyncChunk.Kind.AUDIT:
            self.result.counts = {
                **self.ingest.counts.as_dict(),
                **self.collection.audit_counts,
            }
        elif self.result.stored:
            self.result.counts = {**self.ingest.counts.as_dict(), **self._provider_counts}

    # audit log

    def audit_step(self, *, wait: bool) -> bool:
        """Store the audit batches that are ready (all of them, waiting for each, when
        `wait`); True when the audit log has ended."""
        if self.done:
            return True
        if self._stream is None:
            self.tracker.phase = "the audit log"
            self._stream = iter(self.collection.audit())
        # Without waiting, a few batches at a time: the caller is reading accounts.
        budget = None if wait else PUMP_BATCHES
        try:
            while wait or (budget and self.collection.audit_ready()):
                if budget is not None:
                    budget -= 1
                self.interrupted = True
                self._store(next(self._stream))
                self.interrupted = False
        except StopIteration:
            self.interrupted = False
            self._end_audit()
        except AuditError as exc:
            self.interrupted = False
            self.result.problems.append(
                f"The audit log could not be read completely: {exc.sentence}"
            )
            self._end_audit()
        return self.done

    def audit_all(self) -> None:
        self.audit_step(wait=True)

    def _store(self, batch: AuditBatch) -> None:
        if batch.phase:
            self.tracker.phase = batch.phase
        with transaction.atomic():
            relax_commit()  # the batch and its cursor are lost, or kept, together
            self.ingest.insert_events(batch.events, seen=batch.seen or len(batch.events))
            self.connection.sync_state = batch.sync_state
            Connection.objects.filter(pk=self.connection.pk).update(sync_state=batch.sync_state)
        self.tracker("audit events", self.ingest.counts.events_seen, 0)

    def _end_audit(self) -> None:
        self.done = True
        self.result.stored = True
        self.ingest.audit_stored()
        self.settle()


# --- 3. the finish -------------------------------------------------------------------------


def finish_run(run_id: int, *, http_requests: int | None = None, relink: bool = True) -> SyncRun:
    """Finish a run whose parts have all ended: relink stored events (`relink` False:
    the caller saw to it), sum the parts' counts, pick the outcome and its sentence,
    record it (once, whoever calls)."""
    run = SyncRun.objects.select_related("connection").get(pk=run_id)
    if run.outcome != SyncRun.Outcome.RUNNING:
        return run
    parts = list(run.chunks.order_by("number"))
    counts: dict[str, int] = {}
    for part in parts:
        for key, value in part.counts.items():
            counts[key] = counts.get(key, 0) + int(value)
    ingest = Ingest(run.connection, now=run.started_at)
    if relink:
        # The audit part refreshed the events' statistics when it ended (not when it stopped).
        audit_ended = any(
            p.kind == SyncChunk.Kind.AUDIT
            and p.state == SyncChunk.State.DONE
            and not p.stopped_early
            for p in parts
        )
        ingest.relink(
            connectors_added=counts.get("connectors_added", 0),
            events_added=0
            if audit_ended
            else counts.get("events_added", 0) + counts.get("own_reads_added", 0),
        )
    counts["events_relinked"] = counts.get("events_relinked", 0) + ingest.counts.events_relinked
    failed: dict[str, str] = {}
    for part in parts:
        failed.update(part.failed_accounts)
    failed.update(_unread_parts(run, parts))
    notes: list[str] = []
    for part in parts:
        notes += [note for note in part.notes if note not in notes]
    outcome, error, stopped_early, stored = _verdict(parts, failed)
    return finish_sync_run(
        run,
        outcome=outcome,
        now=timezone.now(),
        counts=counts,
        http_requests=http_requests
        if http_requests is not None
        else sum(part.http_requests for part in parts),
        error=error,
        failed_accounts=sorted(failed),
        stopped_early=stopped_early,
        stored_data=stored,
        notes=" ".join(notes),
    )


def _verdict(parts: list[SyncChunk], failed: dict[str, str]) -> tuple[str, str, bool, bool]:
    """(outcome, sentence, stopped early, the accounts were stored) of a run's parts."""
    account_parts = [p for p in parts if p.kind == SyncChunk.Kind.ACCOUNTS]
    stored = all(p.stored for p in account_parts)
    sentences: list[str] = []
    stopped = [p for p in parts if p.stopped_early]
    if stopped:
        lead = next((p for p in stopped if p.error), stopped[0])
        if lead.error:
            sentences.append(lead.error)
        unread = sum(p.accounts for p in account_parts if not p.stored and p != lead)
        if unread:
            sentences.append(
                f"{unread} account(s) were not read before it stopped; they keep the data "
                "of the last sync and are read again next time."
            )
    broken = [p for p in parts if p.state == SyncChunk.State.FAILED and not p.stopped_early]
    for part in broken:
        if part.kind == SyncChunk.Kind.AUDIT and part.error:
            sentences.append(f"The audit log could not be read: {part.error}")
        # (a failed part of accounts names its accounts among those not read)
    if failed:
        sentences.append(
            f"{len(failed)} account(s) could not be read: " + "; ".join(sorted(failed.values())[:5])
        )
    for part in parts:
        sentences += part.problems
    if broken and len(broken) == len(parts) - 1 and not any(p.stored for p in broken):
        return SyncRun.Outcome.FAILED, " ".join(sentences), False, False
    if stopped or broken or failed or any(p.problems for p in parts):
        only_stopped = bool(stopped) and not broken
        return SyncRun.Outcome.PARTIAL, " ".join(sentences), only_stopped, stored
    return SyncRun.Outcome.SUCCEEDED, "", False, True


def _unread_parts(run: SyncRun, parts: list[SyncChunk]) -> dict[str, str]:
    """The accounts of the parts of accounts that failed as a whole (their worker kept
    dying, or an unexpected error): id -> a sentence naming the account and why."""
    broken = [
        p
        for p in parts
        if p.kind == SyncChunk.Kind.ACCOUNTS
        and p.state == SyncChunk.State.FAILED
        and not p.stopped_early
        and p.error
    ]
    if not broken:
        return {}
    ids = [account for part in broken for account in part.account_ids]
    names = dict(
        AccountLink.objects.filter(
            connection_id=run.connection_id, external_id__in=ids
        ).values_list("external_id", "company_name")
    )
    return {
        account: f"{names.get(account) or account} ({account}): {part.error}"
        for part in broken
        for account in part.account_ids
    }


# --- everything in this process ---------------------------------------------------------------


def run_sync(
    connection: Connection,
    *,
    trigger: str = SyncRun.Trigger.SCHEDULE,
    now: datetime | None = None,
    progress: Progress | None = None,
    provider: SyncProvider | None = None,
) -> SyncRun:
    """Sync one connection in this process and return its finished run. Raises
    `integrations.lifecycle.SyncAlreadyRunning` when another sync holds the claim.

    The parts run here, reading the accounts and the audit log at once within the
    connection's request budget. On PostgreSQL outside a transaction the audit log is
    read and stored by a process of its own (`manage.py sync_part`) and each account part
    is stored by a thread of its own while the next is read (the module's docstring);
    otherwise (inside a transaction: the tests) the provider's threads read the audit log
    and this thread stores its batches whenever they are ready — between the accounts'
    requests and after each part. A time limit stops every part, each recording what it
    kept; anything unexpected fails the run with a sentence."""
    run, parts, collection = start_sync(
        connection, trigger=trigger, now=now, progress=progress, provider=provider
    )
    if collection is None:
        return run
    inline = _Inline(run, parts, collection, progress)
    try:
        with RunHeartbeat(run, own_parts=True):
            inline.go()
    except SoftTimeLimitExceeded:
        inline.stop(exc=None)
    except Exception as exc:
        logger.exception("Sync of connection %s failed unexpectedly", connection.pk)
        inline.stop(exc=exc)
    finally:
        requests = collection.requests()
        collection.close()
    if inline.audit_process is not None and inline.audit_process.poll() is None:
        inline.audit_process.terminate()  # stopped with the run
        inline.audit_process.wait()
    if inline.crash:
        return finish_sync_run(
            run,
            outcome=SyncRun.Outcome.FAILED,
            now=timezone.now(),
            counts=inline.counts(),
            http_requests=requests,
            error=inline.crash,
            stored_data=inline.accounts_stored(),
        )
    if inline.parts_in_process:  # each part counted its own requests
        return finish_run(run.pk, relink=not inline.linked_after_audit)
    return finish_run(run.pk, http_requests=requests)


def _database_url() -> str:
    """The URL of the database this process uses (the same one, whatever the .env or a
    test runner chose), for a process of ours to join it."""
    conf = db.settings_dict
    user = quote(conf.get("USER") or "", safe="")
    password = quote(conf.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = conf.get("HOST") or "127.0.0.1"
    port = conf.get("PORT") or 5432
    return f"postgres://{credentials}{host}:{port}/{quote(conf['NAME'], safe='')}"


def _plain_setting(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def _asked_for(run: SyncRun) -> bool:
    """Someone asked for this run (Sync now, the command line): not the schedule."""
    return run.trigger != SyncRun.Trigger.SCHEDULE


def _audit_process_possible(collection: Collection) -> bool:
    """The audit part can run in a process of its own: a database other processes see
    (PostgreSQL, nothing uncommitted: not inside a transaction — a test's, say), a
    provider whose request budget can be split, and the setting on."""
    return (
        settings.VECTIS_SYNC_AUDIT_PROCESS
        and db.vendor == "postgresql"
        and not db.in_atomic_block
        and collection.budget is not None
        and collection.request_budget >= 2
    )


class _Storing(threading.Thread):
    """A part's accounts stored by a thread of its own, on its own database connection,
    while the next part is read: the requests do not wait for the writes (storing a
    part of 500 accounts left no request in flight for 1-1.5 s of its 9 s incremental
    read, measured on a slow 2-core machine)."""

    def __init__(
        self,
        part: _Part,
        accounts: list[AccountSnapshot],
        then: Callable[[_Part], None] | None = None,
    ) -> None:
        super().__init__(name=f"sync-store-part-{part.chunk.number}", daemon=True)
        self.part = part
        self.accounts = accounts
        self.then = then
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.part.store(self.accounts)
            if self.then is not None:
                self.then(self.part)
        except BaseException as exc:  # re-raised by the thread that waits for it
            self.error = exc
        finally:
            db.close()  # this thread's connection


class _Inline:
    """The parts of one run done by this process (see `run_sync`)."""

    def __init__(
        self,
        run: SyncRun,
        parts: list[SyncChunk],
        collection: Collection,
        progress: Progress | None,
    ) -> None:
        self.run = run
        self.collection = collection
        self.progress = progress
        self.account_chunks = [p for p in parts if p.kind == SyncChunk.Kind.ACCOUNTS]
        self.audit_chunk = next(p for p in parts if p.kind == SyncChunk.Kind.AUDIT)
        self.audit: _Part | None = None
        self.current: _Part | None = None
        # The account part being stored by a thread while the next one is read, and the
        # one whose storing failed (the part a crash is about).
        self.storing: _Storing | None = None
        self.failed_store: _Part | None = None
        self.store_error: BaseException | None = None
        self.finished: list[_Part] = []
        self.deferred: BaseException | None = None
        self.crash = ""
        self.audit_process: subprocess.Popen[str] | None = None
        # Every stored event was linked after the audit part ended (`_link_after_audit`).
        self.linked_after_audit = False
        # The audit part ran in its own process: the parts' request counts add up.
        self.parts_in_process = False

    def _pump(self, phase: str, done: int, total: int) -> None:
        """Progress of an account part: report it, and store the audit batches the
        audit readers have brought meanwhile. A stop raised by the audit log waits until
        the account part is stored (it belongs to the audit part, not to this one)."""
        if self.progress is not None:
            self.progress(phase, done, total)
        if self.audit is not None and self.deferred is None and not self.audit.done:
            try:
                self.audit.audit_step(wait=False)
            except BaseException as exc:  # re-raised once the account part is stored
                self.audit.interrupted = True
                self.deferred = exc

    def _claim(self, chunk: SyncChunk) -> SyncChunk | None:
        claimed = claim_chunk(chunk.pk, now=timezone.now())
        if claimed is not None:
            claimed.run = self.run
        return claimed

    def go(self) -> None:
        if _audit_process_possible(self.collection):
            self._go_with_audit_process()
            return
        chunk = self._claim(self.audit_chunk)
        if chunk is not None:
            self.audit = _Part(chunk, self.collection, SyncProgress(self.progress))
            self.audit.audit_step(wait=False)  # starts the audit readers
        self._account_parts(self._pump)
        if self.audit is not None:
            self.audit.audit_step(wait=True)
            self.audit.result.record(self.audit.chunk, now=timezone.now())
            self.finished.append(self.audit)

    def _account_parts(
        self,
        progress: Progress,
        *,
        store_aside: bool = False,
        read: Callable[[], None] | None = None,
    ) -> None:
        """Each account part read, then stored. `store_aside`: a part is stored by a
        thread of its own, on its own database connection, while this one reads the next.
        Only on PostgreSQL outside a transaction (as for the audit process): that
        connection must see what this one committed — the plan's account links — and
        nothing this thread stores meanwhile may wait on it. `read`: called once every
        account part has been read (the last one may still be being stored)."""
        for pending in self.account_chunks:
            claimed = self._claim(pending)
            if claimed is None:
                continue
            before = self.collection.requests()
            part = self.current = _Part(claimed, self.collection, SyncProgress(progress))
            accounts = part.read()
            part.result.http_requests = self.collection.requests() - before
            self._stored()  # the previous part (its failure stops the run here)
            if store_aside:
                self.storing = _Storing(part, accounts, then=self._link_after_audit)
                self.storing.start()
            else:
                part.store(accounts)
                part.result.record(claimed, now=timezone.now())
                self.finished.append(part)
            self.current = None
            if self.deferred is not None:
                raise self.deferred
            if self.audit is not None:
                self.audit.audit_step(wait=False)
        if read is not None:
            read()
        self._stored()

    def _stored(self) -> None:
        """Wait for the part being stored aside, and record it; raise what failed it."""
        storing = self.storing
        if storing is None:
            return
        storing.join()
        if storing.error is not None:
            self.failed_store, self.store_error = storing.part, storing.error
            self.storing = None
            raise storing.error
        # Cleared only once recorded: a time limit in between finds it again in `stop()`
        # (recording twice writes nothing: only a running part is recorded).
        if storing.part not in self.finished:
            storing.part.result.record(storing.part.chunk, now=timezone.now())
            self.finished.append(storing.part)
        self.storing = None

    def _link_after_audit(self, part: _Part) -> None:
        """After a part is stored aside (its thread, after its own link): the first time
        the audit part has ended its log by then — recorded by the audit process itself,
        after its last batch was committed — link every stored event whose connector is
        stored: what slipped past the parts' links while the log was being stored (an
        event stored between a part's commit and the audit ingest's next connector
        look-up), and what a failed link left; as the finish would (after fresh
        statistics of the connectors when the run has added many). Nothing is stored
        after that but the parts that follow, which link their own: the run's finish has
        nothing left to relink (it still does when this did not run or failed, or when a
        later part's own link failed: this runs again)."""
        if self.linked_after_audit and not part.link_failed:
            return
        self.linked_after_audit = False
        try:
            if not SyncChunk.objects.filter(
                pk=self.audit_chunk.pk, state=SyncChunk.State.DONE, stopped_early=False
            ).exists():
                return  # still storing, stopped early or failed: the finish sees to it
            part.tracker.phase = "the stored audit events of connectors added while it was read"
            added = sum(p.result.counts.get("connectors_added", 0) for p in [*self.finished, part])
            part.ingest.relink(connectors_added=added)
        except Exception:  # an optimisation: whatever fails it, the finish relinks
            logger.warning(
                "Sync run %s: linking the stored audit events after the audit log failed; "
                "the run's final relink does it",
                self.run.pk,
                exc_info=True,
            )
            return
        part.settle()
        self.linked_after_audit = True

    def _go_with_audit_process(self) -> None:
        """The audit part in a process of its own (its own interpreter lock and database
        connection), the accounts here: parsing the audit log no longer slows the
        accounts' requests. The request budget is split while both run — the audit
        process takes a share, this one the rest — and whichever finishes first hands
        the other the whole budget: this one gets it back when the audit process ends,
        and the audit process is told (a line on its standard input) once the accounts
        are read."""
        total = self.collection.request_budget
        # The audit process is held up by parsing and storing, not by requests: a quarter
        # of the budget keeps it busy; the accounts, which wait on requests, get the rest.
        share = max(1, total // 4)
        # The settings that shape a sync, as this process has them (a test, the benchmark
        # or an operator may have changed them here).
        prefixes = settings_prefixes()
        overrides = {
            name: getattr(settings, name)
            for name in dir(settings)
            if name.startswith(prefixes) and _plain_setting(getattr(settings, name))
        }
        budget = self.collection.budget
        assert budget is not None
        # A process of its own, started as a command (never by forking this one: a
        # database connection or a thread must not be copied half-way).
        child = subprocess.Popen(  # noqa: S603 (our interpreter, our command, an id)
            [
                sys.executable,
                str(settings.BASE_DIR / "manage.py"),
                "sync_part",
                str(self.audit_chunk.pk),
                "--budget",
                str(share),
                "--stdin",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "DATABASE_URL": _database_url()},
        )
        stdin = child.stdin
        assert stdin is not None
        stdin.write(json.dumps(overrides) + "\n")
        stdin.flush()
        budget(total - share)
        self.audit_process = child

        def give_audit_all() -> None:  # the accounts are read: the audit log's turn
            with contextlib.suppress(OSError):  # it has ended already
                stdin.write(budget_line(total))
                stdin.flush()

        def give_back() -> None:  # the whole budget again once the audit log is done
            child.wait()
            budget(total)

        watcher = threading.Thread(target=give_back, name="audit-process-watcher", daemon=True)
        watcher.start()
        try:
            self._account_parts(
                self.progress or (lambda phase, done, total: None),
                store_aside=True,
                read=give_audit_all,
            )
        finally:
            with contextlib.suppress(OSError):
                stdin.close()
            watcher.join()
        audit = SyncChunk.objects.get(pk=self.audit_chunk.pk)
        if audit.state in (SyncChunk.State.PENDING, SyncChunk.State.RUNNING):
            # The process died before it could say how it ended.
            claimed = (
                self._claim(self.audit_chunk) if audit.state == SyncChunk.State.PENDING else audit
            )
            if claimed is not None:
                PartResult(
                    state=SyncChunk.State.FAILED,
                    error=(
                        f"The process reading the audit log stopped (exit code "
                        f"{child.returncode}) before it finished; what it stored is kept and "
                        "the next sync continues from there."
                    ),
                ).record(claimed, now=timezone.now())
        self.parts_in_process = True

    def stop(self, *, exc: BaseException | None) -> None:
        """Record every part that had not ended: the one that was interrupted says why;
        the others stopped with it. `exc` None: a time limit; else a crash."""
        if self.storing is not None:
            # A part was being stored aside when the run stopped: it finishes and is
            # recorded as stored — or its failure is recorded below, as the run's crash.
            with contextlib.suppress(BaseException):
                self._stored()
        failed, store_error = self.failed_store, self.store_error
        if failed is not None and store_error is not None and store_error is not exc:
            # Found here, not raised through run_sync (which logs what it catches): a
            # store error must reach the worker log even when another error or the time
            # limit stopped the run with it.
            logger.error(
                "Storing part %s of sync run %s failed",
                failed.chunk.number,
                self.run.pk,
                exc_info=store_error,
            )
        time_limit = exc is None
        if exc is None and store_error is not None:
            exc = store_error  # the run fails on it; the time limit still stopped the rest
        now = timezone.now()
        interrupted: _Part | None = None
        if self.audit is not None and self.audit.interrupted:
            interrupted = self.audit
        elif failed is not None and exc is store_error:
            interrupted = failed
        elif self.current is not None:
            interrupted = self.current
        elif self.audit is not None and self.audit not in self.finished:
            interrupted = self.audit
        if exc is not None and interrupted is not None:
            self.crash = _unexpected(exc, interrupted.tracker.phase)
        # The part the time limit stopped while a store error fails the run: it says so.
        limited: _Part | None = None
        if time_limit and exc is not None:
            limited = self.current or (
                self.audit if self.audit is not None and self.audit not in self.finished else None
            )
        for part in [failed, self.current, self.audit]:
            if part is None or part in self.finished:
                continue
            is_audit = part.chunk.kind == SyncChunk.Kind.AUDIT
            if exc is None or part is limited:
                part.result.stopped_early = True
                part.result.stored = is_audit  # audit batches are stored as they come
                if part is interrupted or part is limited:
                    part.result.error = _time_limit(part.tracker.phase, kept=is_audit)
            else:
                part.result.state = SyncChunk.State.FAILED
                if part is interrupted:
                    part.result.error = self.crash
                elif part is failed and store_error is not None:
                    # Its own error, not the one that stopped the run with it.
                    part.result.error = _unexpected(store_error, part.tracker.phase)
                else:
                    part.result.error = ""
            part.settle()
            part.result.record(part.chunk, now=now)
            self.finished.append(part)
        for pending in self.account_chunks:
            chunk = self._claim(pending)
            if chunk is None:
                continue
            # Parts never started: stopped early by a time limit, failed with a crash.
            PartResult(
                state=SyncChunk.State.DONE if time_limit else SyncChunk.State.FAILED,
                stopped_early=time_limit,
            ).record(chunk, now=now)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for chunk in self.run.chunks.all():
            for key, value in chunk.counts.items():
                counts[key] = counts.get(key, 0) + int(value)
        return counts

    def accounts_stored(self) -> bool:
        return not self.run.chunks.filter(kind=SyncChunk.Kind.ACCOUNTS, stored=False).exists()


# --- helpers -----------------------------------------------------------------------------------


def _sync_provider(connection: Connection) -> SyncProvider:
    provider = get_provider(connection.provider)
    if not callable(getattr(provider, "collect", None)):
        raise TypeError(f"The {provider.name} provider does not sync backups.")
    return provider  # type: ignore[return-value]


def _failed(accounts: list[AccountSnapshot]) -> dict[str, str]:
    """Accounts (id -> sentence naming it) of which something could not be read."""
    return {
        account.external_id: f"{account.display_name} ({account.external_id}): {account.error}"
        for account in accounts
        if account.error
    }


def _time_limit(phase: str, *, kept: bool) -> str:
    limit = settings.CELERY_TASK_SOFT_TIME_LIMIT
    if kept:
        return (
            f"The sync reached its time limit ({limit} s) while reading {phase}. "
            "Everything read so far is kept, and the next sync continues from there."
        )
    return (
        f"The sync reached its time limit ({limit} s) while reading {phase}, before these "
        "accounts could be stored: they keep the data of the last sync and are read again "
        "next time; if this repeats, raise CELERY_TASK_SOFT_TIME_LIMIT or lower "
        "VECTIS_SYNC_CHUNK_ACCOUNTS."
    )


def _unexpected(exc: BaseException, phase: str) -> str:
    return (
        f"The sync stopped on an unexpected error ({type(exc).__name__}) while reading "
        f"{phase}. What it read before is kept and the next sync continues from there; if "
        "this happens again, send the worker log of this time to support."
    )


def _record_credential(connection: Connection, collection: Collection, *, now: datetime) -> None:
    """What the vendor said about the connection's own credential (kept as it was when
    it could not say)."""
    credential = collection.credential()
    if credential is None:
        return
    values: dict[str, Any] = {
        "credential_kind": credential.kind,
        "credential_checked_at": now,
        "credential_note": credential.note[:255],
    }
    if credential.found:  # the vendor did not list it: what was known stays
        values["credential_expires_at"] = credential.expires_at
        values["credential_last_used_at"] = credential.last_used_at
    Connection.objects.filter(pk=connection.pk).update(**values)
    for key, value in values.items():
        setattr(connection, key, value)
