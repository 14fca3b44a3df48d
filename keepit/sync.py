"""The Keepit sync: child accounts, connectors, backup status and audit events.

One run, in a fixed order:

1. **Claim** the connection (a `running` SyncRun row; the database refuses a second),
   and keep its heartbeat on a timer (integrations.services.RunHeartbeat) while it runs.
2. **Load from Keepit**: child accounts (one call); then, with bounded concurrency, each
   account's connectors and backup summary, then each live connector's health.
3. **Load ours** keyed by Keepit ids: links, connectors, statuses (one query each).
4. **Diff and apply** in bulk: account links and customers, connectors, statuses. Only
   rows that differ are written, so a run against unchanged data writes nothing.
   What Keepit stopped reporting is marked `removed_at`, never deleted; what could not
   be read (an account whose calls failed) is left as it was. Audit events stored
   before their connector was known are linked to it now (one bulk UPDATE), and events
   of an account whose customer changed move with it.
5. **Audit log**: the window (first run: the last 14 days; then the cursor minus an
   overlap) is read in time slices, oldest first. Each slice's pages are streamed by a
   reader thread into a bounded queue; the main thread inserts each batch in one
   statement (ON CONFLICT DO NOTHING on the dedup key). After each slice the cursor is
   committed, so a run that is killed, crashes or reaches its time limit resumes at the
   last complete slice instead of re-reading 14 days. Memory stays flat.
6. **Record** the run: outcome, counts, HTTP requests, error sentence; then listeners
   (alerts) are told after commit.

Failures: a failed child-account read fails the run and writes nothing; failures of
single accounts make the run `partial`, naming them, and leave their data untouched;
Celery's soft time limit ends the run `partial` with a sentence saying it will continue.
Anything unexpected ends the run `failed` with a sentence (the traceback goes to the log).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone

from backups.models import BackupAuditEvent, BackupConnector, BackupConnectorStatus
from customers.models import Customer
from customers.names import normalize_company_name
from integrations.models import AccountLink, Connection, SyncRun
from integrations.services import RunHeartbeat, claim_sync_run, finish_sync_run

from .client import AUDIT_PAGE_SIZE, KeepitClient
from .exceptions import KeepitError
from .mapping import audit_category, backup_status, connector_kind, health_reason
from .schemas import AuditRecord, BackupSummary, ChildAccount, Connector, ConnectorHealth

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000
AUDIT_QUEUE_BATCHES = 4
# Keepit does not say whether the filter's bounds are inclusive: consecutive slices
# overlap by this much so no boundary record falls between two (dedup drops the repeat).
SLICE_OVERLAP = timedelta(seconds=1)
# last_seen_at / checked_at are refreshed at most this often when nothing else changes,
# so a sync against unchanged data writes no row.
SEEN_RESOLUTION = timedelta(hours=24)

# Columns written by the audit insert, in order (see KeepitSync._insert_events).
EVENT_COLUMNS = (
    "connection_id",
    "customer_id",
    "connector_id",
    "account_external_id",
    "connector_external_id",
    "occurred_at",
    "category",
    "area",
    "message",
    "actor",
    "succeeded",
    "allowed",
    "client_ip",
    "operation",
    "method",
    "metadata",
    "is_own_read",
    "dedup_key",
    "created_at",
)

T = TypeVar("T")
R = TypeVar("R")

Progress = Callable[[str, int, int], None]


@dataclass
class AccountData:
    """What Keepit said about one child account (None where the read failed)."""

    account: ChildAccount
    connectors: list[Connector] | None = None
    summary: dict[str, BackupSummary] = field(default_factory=dict)
    health: dict[str, ConnectorHealth] = field(default_factory=dict)
    error: str = ""


@dataclass
class SyncCounts:
    accounts_seen: int = 0
    accounts_linked: int = 0
    customers_created: int = 0
    accounts_ambiguous: int = 0
    accounts_removed: int = 0
    connectors_added: int = 0
    connectors_updated: int = 0
    connectors_removed: int = 0
    status_changes: int = 0
    events_relinked: int = 0
    events_seen: int = 0
    # Keepit's own events; Vectis's own API reads (which Keepit logs too) count apart.
    events_added: int = 0
    own_reads_added: int = 0
    own_reads_skipped: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class KeepitSync:
    """One sync of one connection. Use `sync_connection()`."""

    def __init__(
        self,
        connection: Connection,
        run: SyncRun,
        client: KeepitClient,
        *,
        now: datetime,
        progress: Progress | None = None,
    ) -> None:
        self.connection = connection
        self.run = run
        self.client = client
        self.now = now
        self.progress = progress or (lambda phase, done, total: None)
        self.counts = SyncCounts()
        self.failed_accounts: dict[str, str] = {}
        self.parent_guid = str(connection.config.get("account_guid", ""))
        # What the run is doing now, for the sentence when it is stopped half-way.
        self.phase = "the customer accounts"
        # Accounts whose customer changed in this run: their stored events move with them.
        self.moved_accounts: dict[str, int | None] = {}

    # --- helpers -------------------------------------------------------------------------

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

    # --- phase 2: load from Keepit -------------------------------------------------------

    def load_accounts(self) -> list[AccountData]:
        children = self.client.child_accounts(self.parent_guid)
        self.counts.accounts_seen = len(children)

        def read_account(child: ChildAccount) -> AccountData:
            data = AccountData(child)
            try:
                data.connectors = self.client.connectors(child.id)
                data.summary = {s.guid: s for s in self.client.backup_summary(child.id)}
            except KeepitError as exc:
                data.connectors = None
                data.error = str(exc)
            return data

        accounts = [data for _, data in self._fan_out("accounts", read_account, children)]
        by_guid = {data.account.id: data for data in accounts}
        health_jobs = [
            (data.account.id, connector.guid)
            for data in accounts
            if data.connectors is not None
            for connector in data.connectors
        ]

        def read_health(job: tuple[str, str]) -> ConnectorHealth | KeepitError:
            try:
                return self.client.connector_health(job[0], job[1])
            except KeepitError as exc:
                return exc

        for (account_guid, connector_guid), result in self._fan_out(
            "health", read_health, health_jobs
        ):
            data = by_guid[account_guid]
            if isinstance(result, KeepitError):
                data.error = data.error or str(result)
            else:
                data.health[connector_guid] = result
        for data in accounts:
            if data.error:
                self.failed_accounts[data.account.id] = (
                    f"{data.account.display_name} ({data.account.id}): {data.error}"
                )
        return accounts

    # --- phase 3/4: accounts -> links and customers ----------------------------------------

    def apply_accounts(self, accounts: list[AccountData]) -> dict[str, AccountLink]:
        now = self.now
        links = {
            link.external_id: link
            for link in AccountLink.objects.filter(connection=self.connection)
        }
        seen = {data.account.id for data in accounts}
        # Accounts that need a customer: new ones, and unlinked/ambiguous ones (a
        # customer may have been added or renamed since). Manual and excluded: never.
        wanted: dict[str, ChildAccount] = {}
        for data in accounts:
            link = links.get(data.account.id)
            if link is None or link.state in (
                AccountLink.State.UNLINKED,
                AccountLink.State.AMBIGUOUS,
            ):
                wanted[data.account.id] = data.account
        names = {normalize_company_name(a.display_name) for a in wanted.values()}
        candidates: dict[str, list[Customer]] = {}
        for customer in Customer.objects.filter(normalized_name__in=names).order_by("id"):
            candidates.setdefault(customer.normalized_name, []).append(customer)
        # One new customer per normalised name, shared by every account that carries it.
        to_create: dict[str, Customer] = {}
        for account in wanted.values():
            key = normalize_company_name(account.display_name)
            if key not in candidates and key not in to_create:
                to_create[key] = Customer(name=account.display_name[:255], normalized_name=key)
        if to_create:
            Customer.objects.bulk_create(list(to_create.values()), batch_size=BATCH_SIZE)
            self.counts.customers_created = len(to_create)

        changed: list[AccountLink] = []
        created: list[AccountLink] = []
        for data in accounts:
            account = data.account
            link = links.get(account.id)
            fresh = link is None
            if link is None:
                link = AccountLink(
                    connection=self.connection,
                    external_id=account.id,
                    first_seen_at=now,
                    last_seen_at=now,
                )
            before = _link_state(link)
            link.company_name = account.company_name[:255]
            link.contact_name = account.full_name[:255]
            link.email = account.email[:255]
            link.removed_at = None
            if account.id in wanted:
                key = normalize_company_name(account.display_name)
                matches = candidates.get(key, [])
                if len(matches) == 1:
                    customer = matches[0]
                    link.customer = customer
                    link.state = AccountLink.State.LINKED
                    link.method = (
                        AccountLink.Method.EXACT
                        if customer.name.strip().casefold() == account.display_name.casefold()
                        else AccountLink.Method.NORMALISED
                    )
                    self.counts.accounts_linked += 1
                elif len(matches) > 1:
                    link.customer = None
                    link.state = AccountLink.State.AMBIGUOUS
                    link.method = ""
                else:
                    link.customer = to_create[key]
                    link.state = AccountLink.State.LINKED
                    link.method = AccountLink.Method.CREATED
            if link.state == AccountLink.State.AMBIGUOUS:
                self.counts.accounts_ambiguous += 1
            if fresh:
                created.append(link)
                continue
            if link.customer_id != before[3]:
                self.moved_accounts[link.external_id] = link.customer_id
            if _link_state(link) != before or now - link.last_seen_at >= SEEN_RESOLUTION:
                link.last_seen_at = link.updated_at = now
                changed.append(link)
        for link in links.values():
            if link.external_id not in seen and link.removed_at is None:
                # bulk_update does not run auto_now; stamp what changed ourselves.
                link.removed_at = link.updated_at = now
                changed.append(link)
                self.counts.accounts_removed += 1
        AccountLink.objects.bulk_create(created, batch_size=BATCH_SIZE)
        AccountLink.objects.bulk_update(
            changed,
            [
                "company_name",
                "contact_name",
                "email",
                "customer",
                "method",
                "state",
                "last_seen_at",
                "removed_at",
                "updated_at",
            ],
            batch_size=BATCH_SIZE,
        )
        return {
            link.external_id: link
            for link in AccountLink.objects.filter(connection=self.connection)
        }

    # --- phase 3/4: connectors and statuses --------------------------------------------------

    def apply_connectors(
        self, accounts: list[AccountData], links: dict[str, AccountLink]
    ) -> dict[str, BackupConnector]:
        now = self.now
        existing = {
            c.external_id: c for c in BackupConnector.objects.filter(connection=self.connection)
        }
        statuses = {
            s.connector_id: s
            for s in BackupConnectorStatus.objects.filter(connector__connection=self.connection)
        }
        readable = {d.account.id for d in accounts if d.connectors is not None}
        listed = {d.account.id for d in accounts}
        created: list[BackupConnector] = []
        changed: list[BackupConnector] = []
        reported: set[str] = set()
        for data in accounts:
            if data.connectors is None:
                continue  # a failed read never removes or changes anything
            link = links[data.account.id]
            customer_id = link.customer_id if link.state == AccountLink.State.LINKED else None
            for item in data.connectors:
                reported.add(item.guid)
                desired = {
                    "account_link_id": link.pk,
                    "customer_id": customer_id,
                    "name": item.name[:255] or item.guid,
                    "kind": connector_kind(item),
                    "vendor_type": item.vendor_type[:64],
                    "accessible": item.accessible,
                    "deletion_scheduled_at": item.deletion_deadline,
                    "vendor_created_at": item.created,
                    "removed_at": None,
                }
                connector = existing.get(item.guid)
                if connector is None:
                    created.append(
                        BackupConnector(
                            connection=self.connection,
                            external_id=item.guid,
                            first_seen_at=now,
                            last_seen_at=now,
                            **desired,
                        )
                    )
                    continue
                differs = any(getattr(connector, k) != v for k, v in desired.items())
                if differs or now - connector.last_seen_at >= SEEN_RESOLUTION:
                    for key, value in desired.items():
                        setattr(connector, key, value)
                    connector.last_seen_at = connector.updated_at = now
                    changed.append(connector)
                    if differs:
                        self.counts.connectors_updated += 1
        link_guid_by_pk = {link.pk: guid for guid, link in links.items()}
        for connector in existing.values():
            if connector.removed_at is not None or connector.external_id in reported:
                continue
            account_guid = link_guid_by_pk.get(connector.account_link_id or -1, "")
            # Removed only when we know: its account was read, or is no longer listed.
            if account_guid in readable or account_guid not in listed:
                connector.removed_at = connector.updated_at = now
                changed.append(connector)
                self.counts.connectors_removed += 1
        BackupConnector.objects.bulk_create(created, batch_size=BATCH_SIZE)
        self.counts.connectors_added = len(created)
        BackupConnector.objects.bulk_update(
            changed,
            [
                "account_link",
                "customer",
                "name",
                "kind",
                "vendor_type",
                "accessible",
                "deletion_scheduled_at",
                "vendor_created_at",
                "removed_at",
                "last_seen_at",
                "updated_at",
            ],
            batch_size=BATCH_SIZE,
        )
        connectors = {
            c.external_id: c for c in BackupConnector.objects.filter(connection=self.connection)
        }
        self._apply_statuses(accounts, connectors, statuses)
        return connectors

    def _apply_statuses(
        self,
        accounts: list[AccountData],
        connectors: dict[str, BackupConnector],
        statuses: dict[int, BackupConnectorStatus],
    ) -> None:
        now = self.now
        created: list[BackupConnectorStatus] = []
        changed: list[BackupConnectorStatus] = []
        for data in accounts:
            if data.connectors is None:
                continue
            for item in data.connectors:
                health = data.health.get(item.guid)
                if health is None:
                    continue  # health unreadable: keep the last known status
                summary = data.summary.get(item.guid)
                reason = health_reason(health.reason)
                desired = {
                    "status": backup_status(summary, health),
                    "health": health.health[:32],
                    "reason": health.reason[:64],
                    "reason_text": reason.sentence[:255],
                    "reason_is_failure": reason.needs_action,
                    "last_backup_at": summary.last_snapshot_time if summary else None,
                    "last_success_at": summary.last_complete_snapshot_time if summary else None,
                    "last_snapshot_size": summary.last_snapshot_size if summary else None,
                }
                connector = connectors[item.guid]
                status = statuses.get(connector.pk)
                if status is None:
                    created.append(
                        BackupConnectorStatus(
                            connector=connector, checked_at=now, status_changed_at=now, **desired
                        )
                    )
                    self.counts.status_changes += 1
                    continue
                differs = any(getattr(status, k) != v for k, v in desired.items())
                if not differs and now - status.checked_at < SEEN_RESOLUTION:
                    continue
                if status.status != desired["status"]:
                    status.status_changed_at = now
                    self.counts.status_changes += 1
                for key, value in desired.items():
                    setattr(status, key, value)
                status.checked_at = now
                changed.append(status)
        BackupConnectorStatus.objects.bulk_create(created, batch_size=BATCH_SIZE)
        BackupConnectorStatus.objects.bulk_update(
            changed,
            [
                "status",
                "health",
                "reason",
                "reason_text",
                "reason_is_failure",
                "last_backup_at",
                "last_success_at",
                "last_snapshot_size",
                "checked_at",
                "status_changed_at",
            ],
            batch_size=BATCH_SIZE,
        )

    # --- phase 5: audit log -------------------------------------------------------------------

    def audit_window(self) -> tuple[datetime, datetime]:
        end = self.now
        oldest = end - timedelta(days=settings.KEEPIT_AUDIT_WINDOW_DAYS)
        cursor_text = self.connection.sync_state.get("audit_cursor")
        start = oldest
        if cursor_text:
            cursor = datetime.fromisoformat(cursor_text)
            start = max(oldest, cursor - timedelta(minutes=settings.KEEPIT_AUDIT_OVERLAP_MINUTES))
        return start, end

    def audit_slices(self) -> list[tuple[datetime, datetime]]:
        """The window cut into `KEEPIT_AUDIT_SLICE_HOURS` slices, oldest first."""
        start, end = self.audit_window()
        step = timedelta(hours=settings.KEEPIT_AUDIT_SLICE_HOURS)
        slices: list[tuple[datetime, datetime]] = []
        while start < end:
            stop = min(start + step, end)
            slices.append((start - SLICE_OVERLAP if slices else start, stop))
            start = stop
        return slices

    def sync_audit(
        self, links: dict[str, AccountLink], connectors: dict[str, BackupConnector]
    ) -> str:
        """Read the audit log into backup_audit_events slice by slice; returns an error
        sentence or "".

        Where it got to is committed with every batch of events: the page to resume at
        inside the current slice (`audit_resume`), and, once a slice is complete, the
        cursor. A run stopped half-way (killed, crashed, time limit) therefore resumes at
        the page it stopped at, one page early so that nothing falls between two runs
        (the dedup key drops the repeats)."""
        customer_by_account = {
            guid: link.customer_id
            for guid, link in links.items()
            if link.state == AccountLink.State.LINKED
        }
        connector_by_guid = {guid: c.pk for guid, c in connectors.items()}
        resume = self._resume_point()
        if resume is not None:
            start, end, offset = resume
            self.phase = f"the audit log (resuming the slice from {start:%Y-%m-%d %H:%M} UTC)"
            error = self._read_audit_slice(
                start, end, customer_by_account, connector_by_guid, offset=offset
            )
            if error:
                return error
        slices = self.audit_slices()
        for number, (start, end) in enumerate(slices, start=1):
            self.phase = (
                f"the audit log (slice {number} of {len(slices)}, from {start:%Y-%m-%d %H:%M} UTC)"
            )
            error = self._read_audit_slice(start, end, customer_by_account, connector_by_guid)
            if error:
                return error
        return ""

    def _resume_point(self) -> tuple[datetime, datetime, int] | None:
        """The slice a stopped run was reading and the page to start again at, if that
        slice is still inside the window."""
        resume = self.connection.sync_state.get("audit_resume")
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

    def _save_audit_state(
        self, *, cursor: datetime | None = None, resume: dict[str, Any] | None = None
    ) -> None:
        state = dict(self.connection.sync_state)
        if cursor is not None:
            state["audit_cursor"] = cursor.isoformat()
        if resume is None:
            state.pop("audit_resume", None)
        else:
            state["audit_resume"] = resume
        self.connection.sync_state = state
        Connection.objects.filter(pk=self.connection.pk).update(sync_state=state)

    def _read_audit_slice(
        self,
        start: datetime,
        end: datetime,
        customer_by_account: dict[str, int | None],
        connector_by_guid: dict[str, int],
        *,
        offset: int = 0,
    ) -> str:
        """One slice: a reader thread streams its pages in batches through a bounded
        queue while this thread inserts them, each batch with where to resume after it."""
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
            except BaseException as exc:  # handed to the main thread, which decides
                hand_over(exc)

        thread = threading.Thread(target=reader, name="keepit-audit-reader", daemon=True)
        thread.start()
        slice_state = {"from": start.isoformat(), "to": end.isoformat()}
        try:
            while True:
                item = batches.get()
                if item is None:
                    return ""
                if isinstance(item, BaseException):
                    if not isinstance(item, KeepitError):
                        raise item
                    return str(item)
                records, next_offset = item
                with transaction.atomic():
                    self._insert_events(records, customer_by_account, connector_by_guid)
                    if next_offset is None:  # the slice is complete: the cursor moves on
                        self._save_audit_state(cursor=end)
                    else:
                        self._save_audit_state(resume={**slice_state, "offset": next_offset})
                self.progress("audit events", self.counts.events_seen, 0)
        finally:
            # However this ends (time limit, crash), the reader stops and lets go.
            stop.set()
            while not batches.empty():
                batches.get_nowait()
            thread.join(timeout=2)

    def _insert_events(
        self,
        records: list[AuditRecord],
        customer_by_account: dict[str, int | None],
        connector_by_guid: dict[str, int],
    ) -> None:
        """Insert one batch in one statement; keys already stored are skipped by the
        unique constraint (ON CONFLICT DO NOTHING), and RETURNING counts what was new.

        Written as one multi-row INSERT rather than `bulk_create`: the model layer's
        per-value preparation cost more than fetching the records (see bench/)."""
        self.counts.events_seen += len(records)
        by_key: dict[str, AuditRecord] = {}
        for record in records:
            if record.time is not None:
                by_key.setdefault(record.dedup_key, record)
        if not by_key:
            return
        ops = db_connection.ops
        created = ops.adapt_datetimefield_value(self.now)
        own_login = self.client.login
        store_own = settings.KEEPIT_STORE_OWN_READS
        rows: list[tuple[Any, ...]] = []
        own_keys: set[str] = set()
        for key, record in by_key.items():
            own = bool(own_login) and record.token == own_login
            if own and not store_own:
                self.counts.own_reads_skipped += 1
                continue
            if own:
                own_keys.add(key)
            rows.append(
                (
                    self.connection.pk,
                    customer_by_account.get(record.account),
                    connector_by_guid.get(record.device) if record.device else None,
                    record.account[:100],
                    record.device[:100],
                    ops.adapt_datetimefield_value(record.time),
                    audit_category(record.area),
                    record.area[:120],
                    record.message,
                    record.token[:255],
                    record.succeeded,
                    record.allowed,
                    record.client_ip[:64],
                    record.acl[:120],
                    record.method[:16],
                    json.dumps(record.metadata),
                    own,
                    key,
                    created,
                )
            )
        if not rows:
            return
        placeholders = "(" + ", ".join(["%s"] * len(EVENT_COLUMNS)) + ")"
        # Only constants and placeholders are formatted in; every value is a parameter.
        table, columns = BackupAuditEvent._meta.db_table, ", ".join(EVENT_COLUMNS)
        values = ", ".join([placeholders] * len(rows))
        sql = f"INSERT INTO {table} ({columns}) VALUES {values} "
        sql += "ON CONFLICT (connection_id, dedup_key) DO NOTHING RETURNING dedup_key"
        with db_connection.cursor() as cursor:
            cursor.execute(sql, [value for row in rows for value in row])
            inserted = [row[0] for row in cursor.fetchall()]
        own_added = sum(1 for key in inserted if key in own_keys)
        self.counts.own_reads_added += own_added
        self.counts.events_added += len(inserted) - own_added

    # --- the run ---------------------------------------------------------------------------

    def execute(self) -> tuple[str, str]:
        """Run phases 2-5; returns (outcome, error sentence)."""
        from .provider import KeepitProvider

        describe = KeepitProvider().describe_error
        region = str(self.connection.config.get("region", ""))
        try:
            accounts = self.load_accounts()
        except KeepitError as exc:
            return SyncRun.Outcome.FAILED, describe(exc, region=region)
        self.phase = "the connectors and backup statuses"
        with transaction.atomic():
            links = self.apply_accounts(accounts)
            connectors = self.apply_connectors(accounts, links)
            self.counts.events_relinked = relink_events(self.connection, self.moved_accounts)
        audit_error = self.sync_audit(links, connectors)
        problems = []
        if self.failed_accounts:
            problems.append(
                f"{len(self.failed_accounts)} account(s) could not be read: "
                + "; ".join(sorted(self.failed_accounts.values())[:5])
            )
        if audit_error:
            problems.append(f"The audit log could not be read completely: {audit_error}")
        if problems:
            return SyncRun.Outcome.PARTIAL, " ".join(problems)
        return SyncRun.Outcome.SUCCEEDED, ""


def _link_state(link: AccountLink) -> tuple[Any, ...]:
    return (
        link.company_name,
        link.contact_name,
        link.email,
        link.customer_id,
        link.method,
        link.state,
        link.removed_at,
    )


def relink_events(connection: Connection, moved_accounts: dict[str, int | None]) -> int:
    """Give stored audit events what was not known when they were inserted: the
    connector (its account's connector list could not be read then) and, for accounts
    whose customer changed, the new customer. Two set-based UPDATEs, each served by a
    partial index; returns the number of events that changed."""
    table = BackupAuditEvent._meta.db_table
    connectors = BackupConnector._meta.db_table
    changed = 0
    with db_connection.cursor() as cursor:
        # Index audit_unlinked_connector_idx: only events still without their connector.
        cursor.execute(
            f"UPDATE {table} AS e SET connector_id = c.id FROM {connectors} AS c "
            "WHERE e.connection_id = %s AND e.connector_id IS NULL "
            "AND e.connector_external_id <> '' "
            "AND c.connection_id = e.connection_id AND c.external_id = e.connector_external_id",
            [connection.pk],
        )
        changed += int(cursor.rowcount)
        if moved_accounts:
            # Index audit_account_idx: the events of one account of one connection.
            whens = " ".join(["WHEN %s THEN CAST(%s AS BIGINT)"] * len(moved_accounts))
            accounts = ", ".join(["%s"] * len(moved_accounts))
            params: list[Any] = [v for pair in moved_accounts.items() for v in pair]
            cursor.execute(
                f"UPDATE {table} SET customer_id = CASE account_external_id {whens} END "
                f"WHERE connection_id = %s AND account_external_id IN ({accounts})",
                [*params, connection.pk, *moved_accounts],
            )
            changed += int(cursor.rowcount)
    return changed


def sync_connection(
    connection: Connection,
    *,
    trigger: str = SyncRun.Trigger.SCHEDULE,
    client: KeepitClient | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> SyncRun:
    """Sync one Keepit connection and return its finished run.

    Raises `SyncAlreadyRunning` when another sync of the connection holds the claim.
    """
    from integrations.crypto import SecretDecryptionError

    from .provider import KeepitConnectionSettings

    started = now or timezone.now()
    run = claim_sync_run(connection, trigger=trigger, now=started)
    own_client = client is None
    if client is None:
        try:
            client = KeepitConnectionSettings.from_connection(connection).client()
        except (SecretDecryptionError, ValueError) as exc:
            return finish_sync_run(
                run,
                outcome=SyncRun.Outcome.FAILED,
                now=timezone.now(),
                counts={},
                http_requests=0,
                error=f"The stored Keepit settings cannot be used: {exc}",
            )
    sync = KeepitSync(connection, run, client, now=started, progress=progress)
    stopped_early = False
    try:
        with RunHeartbeat(run):
            outcome, error = sync.execute()
    except SoftTimeLimitExceeded:
        stopped_early = True
        outcome = SyncRun.Outcome.PARTIAL
        error = (
            f"The sync reached its time limit ({settings.CELERY_TASK_SOFT_TIME_LIMIT} s) while "
            f"reading {sync.phase}. Everything read so far is kept, and the next sync "
            "continues from there."
        )
        logger.warning("Keepit sync of connection %s: %s", connection.pk, error)
    except Exception as exc:
        logger.exception("Keepit sync of connection %s failed unexpectedly", connection.pk)
        outcome = SyncRun.Outcome.FAILED
        error = (
            f"The sync stopped on an unexpected error ({type(exc).__name__}) while reading "
            f"{sync.phase}. What it read before is kept and the next sync continues from "
            "there; if this happens again, send the worker log of this time to support."
        )
    finally:
        if own_client:
            client.close()
    return finish_sync_run(
        run,
        outcome=outcome,
        now=timezone.now(),
        counts=sync.counts.as_dict(),
        http_requests=client.request_count,
        error=error,
        failed_accounts=sorted(sync.failed_accounts),
        stopped_early=stopped_early,
    )
