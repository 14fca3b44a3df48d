"""Ingest: a provider's snapshots into the vendor-neutral tables, the same way for every
vendor.

Each step loads ours keyed by the vendor's ids (one query), diffs, and applies in bulk:
only rows that differ are written, so a sync of unchanged data writes nothing.
`last_seen_at` / `checked_at` move with a change, or at most daily. What the vendor
stopped reporting is marked `removed_at`, never deleted; what could not be read (an
account whose connector list failed, a connector whose status failed) stays as it was.

- `Ingest.apply_inventory(accounts)`: account links and customers (backups/accounts.py),
  their seats (backups/seats.py), connectors, their statuses and daily job outcomes
  (backups/jobs.py); then stored audit events learn what they could not know when they
  arrived (`relink_events`).
- `Ingest.insert_events(events)`: one `INSERT … ON CONFLICT DO NOTHING RETURNING` per
  batch on the (connection, dedup key) constraint, so overlapping windows and resumed
  runs never store an event twice.

In a first sync the audit log is stored beside the account parts, so most events arrive
before their connector exists. Each part, once committed, links the events stored before
its new connectors (`link_added_connectors`), the audit ingest looks up connectors it does
not know yet before each batch (at most every `CONNECTOR_LOOKUP_SECONDS`), and the run's
final `relink` takes what slipped between the two: linking after the fact costs about
30 µs an event (a new row version in every index), so it is spread over the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import BigIntegerField, Case, Q, Value, When

from integrations.models import Connection
from integrations.sql import (
    fill_foreign_key,
    insert_rows,
    refresh_statistics,
    set_foreign_key,
    text_array,
    update_rows,
)

from .accounts import BATCH_SIZE, SEEN_RESOLUTION, match_accounts
from .jobs import apply_job_days
from .models import AccountLink, BackupAuditEvent, BackupConnector, BackupConnectorStatus
from .seats import apply_seats
from .snapshot import AccountSnapshot, AuditEventSnapshot

# The columns of a connector a snapshot sets (the rest is ours: ids, first/last seen).
CONNECTOR_FIELDS = (
    "account_link",
    "customer",
    "name",
    "kind",
    "vendor_type",
    "accessible",
    "deletion_scheduled_at",
    "vendor_created_at",
    "removed_at",
)
STATUS_FIELDS = (
    "status",
    "health",
    "reason",
    "reason_text",
    "reason_is_failure",
    "last_backup_at",
    "last_success_at",
    "last_snapshot_size",
    "error_code",
    "fix_text",
    "help_url",
    "help_label",
    "error_checked_at",
)


# How often, at most, the audit ingest looks up connectors it does not know yet.
CONNECTOR_LOOKUP_SECONDS = 0.25

# Rows a run adds after which the tables' statistics are refreshed before the relink.
REFRESH_STATISTICS_AFTER = 10_000


@dataclass
class IngestCounts:
    accounts_seen: int = 0
    accounts_linked: int = 0
    customers_created: int = 0
    accounts_ambiguous: int = 0
    accounts_removed: int = 0
    connectors_added: int = 0
    connectors_updated: int = 0
    connectors_removed: int = 0
    status_changes: int = 0
    job_days_written: int = 0
    seats_written: int = 0
    events_relinked: int = 0
    events_seen: int = 0
    # The vendor's own events; Vectis's own API reads (which a vendor may log too) apart.
    events_added: int = 0
    own_reads_added: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class Ingest:
    """Writes one connection's snapshots (see the module docstring)."""

    def __init__(self, connection: Connection, *, now: datetime) -> None:
        self.connection = connection
        self.now = now
        self.counts = IngestCounts()
        # For the audit events: the customer of each linked account and the id of each
        # connector, loaded from the database when the first batch comes.
        self.customer_by_account: dict[str, int | None] | None = None
        self.connector_by_guid: dict[str, int] | None = None
        self._connectors_read_at = 0.0
        self.clock: Callable[[], float] = time.monotonic  # for the look-ups' interval
        # The connectors this ingest added (external id → id), for `link_added_connectors`.
        self.connectors_added: dict[str, int] = {}

    # --- inventory ---------------------------------------------------------------------------

    def apply_inventory(self, accounts: Sequence[AccountSnapshot]) -> None:
        """Every account read whole (a provider that does not read in parts): links and
        customers, then connectors and statuses, then the relink of stored events. Call it
        inside a transaction: it is one consistent picture."""
        self.apply_accounts(accounts)
        self.apply_part(accounts)
        self.relink()

    def apply_accounts(self, accounts: Sequence[AccountSnapshot]) -> None:
        """The account list (the plan): links and customers of every listed account,
        their connectors marked removed when the vendor no longer lists the account, and
        the stored events of accounts whose customer changed moved with them."""
        self.counts.accounts_seen = len(accounts)
        linked = match_accounts(self.connection, accounts, now=self.now)
        self.counts.accounts_linked = linked.linked
        self.counts.customers_created = linked.customers_created
        self.counts.accounts_ambiguous = linked.ambiguous
        self.counts.accounts_removed = linked.removed
        # Connectors of accounts the vendor no longer lists: removed (kept, not deleted).
        self.counts.connectors_removed += BackupConnector.objects.filter(
            connection=self.connection,
            removed_at__isnull=True,
            account_link__removed_at__isnull=False,
        ).update(removed_at=self.now, updated_at=self.now)
        self.counts.events_relinked += relink_events(
            self.connection, linked.moved, unknown_connectors=False
        )

    def apply_part(self, accounts: Sequence[AccountSnapshot]) -> None:
        """Some listed accounts, read whole: their seats, connectors, statuses and daily
        job outcomes. Only these accounts' rows are loaded and written, so a part costs
        the same whatever the size of the fleet."""
        ids = [account.external_id for account in accounts]
        links = {
            link.external_id: link
            for link in AccountLink.objects.filter(connection=self.connection, external_id__in=ids)
        }
        self.counts.seats_written += apply_seats(accounts, links, now=self.now)
        connectors = self._apply_connectors(accounts, links)
        listed: dict[datetime, list[int]] = {}
        for account in accounts:
            if account.connectors is not None and account.connectors_listed_at is not None:
                link = links[account.external_id]
                listed.setdefault(account.connectors_listed_at, []).append(link.pk)
        for moment, link_ids in listed.items():
            AccountLink.objects.filter(pk__in=link_ids).update(connectors_listed_at=moment)
        self.counts.job_days_written += apply_job_days(
            connectors,
            (
                (item.external_id, day)
                for account in accounts
                for item in account.connectors or ()
                for day in item.jobs
            ),
            now=self.now,
        )

    def link_added_connectors(self) -> None:
        """The audit events already stored for the connectors added here get them. Call
        it once those connectors are committed: in a first sync the audit log is stored
        beside the account parts, so a part's events may arrive before its connectors;
        from its next look-up (at most `CONNECTOR_LOOKUP_SECONDS` after the commit) the
        audit ingest links new events itself (`insert_events`), and whatever slips between
        the two is left to one `relink` once the audit log is stored (`run_sync`), or to
        the run's final one."""
        self.counts.events_relinked += set_foreign_key(
            BackupAuditEvent,
            "connector",
            by="connector_external_id",
            target_key="external_id",
            values=self.connectors_added,
            scope="connection",
            scope_value=self.connection.pk,
        )
        self.connectors_added = {}

    def audit_stored(self) -> None:
        """The audit log is stored. After a bulk load (a first sync: hundreds of thousands
        of events) the planner's statistics describe a nearly empty table: fresh ones
        now, by the part that loaded it (while the accounts may still be read), so the
        run's final relink and what comes after it plan on the real table."""
        if self.counts.events_added + self.counts.own_reads_added >= REFRESH_STATISTICS_AFTER:
            refresh_statistics(BackupAuditEvent)

    def relink(self, *, connectors_added: int = 0, events_added: int = 0) -> None:
        """Stored audit events whose connector was unknown when they arrived (its account
        could not be read then, or its part was stored after them) get it: one join.
        After a big first sync, a join planned on stale statistics compares every event
        with every connector: the connectors' statistics are refreshed first when the run
        added many, and the events' too when `events_added` says they are still stale
        (the audit part refreshes them itself when it ends: `audit_stored`)."""
        stale = [
            model
            for model, added in (
                (BackupConnector, connectors_added),
                (BackupAuditEvent, events_added),
            )
            if added >= REFRESH_STATISTICS_AFTER
        ]
        if stale:
            refresh_statistics(*stale)
        self.counts.events_relinked += relink_events(self.connection, {})

    def _apply_connectors(
        self, accounts: Sequence[AccountSnapshot], links: dict[str, AccountLink]
    ) -> dict[str, BackupConnector]:
        now = self.now
        reported_ids = [
            item.external_id for account in accounts for item in account.connectors or ()
        ]
        # This part's accounts' connectors, and any connector they report that was filed
        # under another account before (a connector that moved).
        mine = BackupConnector.objects.filter(connection=self.connection).filter(
            Q(account_link_id__in=[link.pk for link in links.values()])
            | Q(external_id__in=reported_ids)
        )
        existing = {c.external_id: c for c in mine}
        statuses = {
            s.connector_id: s
            for s in BackupConnectorStatus.objects.filter(
                connector_id__in=[c.pk for c in existing.values()]
            )
        }
        readable = {a.external_id for a in accounts if a.connectors is not None}
        created: list[BackupConnector] = []
        changed: list[BackupConnector] = []
        # Only seen again (the daily refresh): written apart, by their two columns alone,
        # so the refresh marks nothing the dashboard counts (vectis.fleet_tiles).
        seen: list[BackupConnector] = []
        reported: set[str] = set()
        for account in accounts:
            if account.connectors is None:
                continue  # a failed read never removes or changes anything
            link = links[account.external_id]
            customer_id = link.customer_id if link.state == AccountLink.State.LINKED else None
            for item in account.connectors:
                reported.add(item.external_id)
                desired: dict[str, Any] = {
                    "account_link_id": link.pk,
                    "customer_id": customer_id,
                    "name": item.name[:255] or item.external_id,
                    "kind": item.kind,
                    "vendor_type": item.vendor_type[:64],
                    "accessible": item.accessible,
                    "deletion_scheduled_at": item.deletion_scheduled_at,
                    "vendor_created_at": item.vendor_created_at,
                    "removed_at": None,
                }
                connector = existing.get(item.external_id)
                if connector is None:
                    created.append(
                        BackupConnector(
                            connection=self.connection,
                            external_id=item.external_id,
                            first_seen_at=now,
                            last_seen_at=now,
                            **desired,
                        )
                    )
                    continue
                differs = any(getattr(connector, k) != v for k, v in desired.items())
                if differs:
                    for key, value in desired.items():
                        setattr(connector, key, value)
                    connector.last_seen_at = connector.updated_at = now
                    changed.append(connector)
                    self.counts.connectors_updated += 1
                elif now - connector.last_seen_at >= SEEN_RESOLUTION:
                    connector.last_seen_at = connector.updated_at = now
                    seen.append(connector)
        link_guid_by_pk = {link.pk: guid for guid, link in links.items()}
        for connector in existing.values():
            if connector.removed_at is not None or connector.external_id in reported:
                continue
            account_guid = link_guid_by_pk.get(connector.account_link_id or -1, "")
            # Removed only when we know: its account was read and no longer reports it.
            # (Connectors of accounts the vendor no longer lists: `apply_accounts`.)
            if account_guid in readable:
                connector.removed_at = connector.updated_at = now
                changed.append(connector)
                self.counts.connectors_removed += 1
        BackupConnector.objects.bulk_create(created, batch_size=BATCH_SIZE)
        self.counts.connectors_added = len(created)
        update_rows(BackupConnector, changed, [*CONNECTOR_FIELDS, "last_seen_at", "updated_at"])
        update_rows(BackupConnector, seen, ["last_seen_at", "updated_at"])
        connectors = {
            c.external_id: c
            for c in BackupConnector.objects.filter(
                connection=self.connection, external_id__in=[*existing, *reported]
            )
        }
        self.connectors_added.update((c.external_id, connectors[c.external_id].pk) for c in created)
        self._apply_statuses(accounts, connectors, statuses)
        return connectors

    def _apply_statuses(
        self,
        accounts: Sequence[AccountSnapshot],
        connectors: dict[str, BackupConnector],
        statuses: dict[int, BackupConnectorStatus],
    ) -> None:
        now = self.now
        created: list[BackupConnectorStatus] = []
        changed: list[BackupConnectorStatus] = []
        checked: list[BackupConnectorStatus] = []
        for account in accounts:
            for item in account.connectors or ():
                snapshot = item.status
                if snapshot is None:
                    continue  # unreadable this time: keep the last known status
                desired: dict[str, Any] = {
                    "status": snapshot.status,
                    "health": snapshot.health[:32],
                    "reason": snapshot.reason[:64],
                    "reason_text": snapshot.reason_text[:255],
                    "reason_is_failure": snapshot.reason_needs_action,
                    "last_backup_at": snapshot.last_backup_at,
                    "last_success_at": snapshot.last_success_at,
                    "last_snapshot_size": snapshot.last_snapshot_size,
                    "error_code": snapshot.error_code[:64],
                    "fix_text": snapshot.fix_text[:255],
                    "help_url": snapshot.help_url[:300],
                    "help_label": snapshot.help_label[:64],
                    "error_checked_at": snapshot.error_checked_at,
                }
                connector = connectors[item.external_id]
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
                if not differs:
                    if now - status.checked_at >= SEEN_RESOLUTION:
                        status.checked_at = now
                        checked.append(status)  # the daily refresh: apart (as `seen`)
                    continue
                if status.status != desired["status"]:
                    status.status_changed_at = now
                    self.counts.status_changes += 1
                for key, value in desired.items():
                    setattr(status, key, value)
                status.checked_at = now
                changed.append(status)
        BackupConnectorStatus.objects.bulk_create(created, batch_size=BATCH_SIZE)
        update_rows(
            BackupConnectorStatus, changed, [*STATUS_FIELDS, "checked_at", "status_changed_at"]
        )
        update_rows(BackupConnectorStatus, checked, ["checked_at"])

    # --- audit events ----------------------------------------------------------------------

    def _learn_connectors(self, guids: set[str]) -> None:
        """Look up the connectors of this batch not known yet, at most once every
        `CONNECTOR_LOOKUP_SECONDS`: in a first sync the audit log is stored while the
        account parts are still adding the connectors, and an event stored without its
        connector must be linked by an UPDATE later (about 30 µs a row)."""
        assert self.connector_by_guid is not None
        unknown = {guid for guid in guids if guid and guid not in self.connector_by_guid}
        if not unknown or self.clock() - self._connectors_read_at < CONNECTOR_LOOKUP_SECONDS:
            return
        self.connector_by_guid.update(
            BackupConnector.objects.filter(
                connection=self.connection, external_id__in=text_array(unknown)
            ).values_list("external_id", "pk")
        )
        self._connectors_read_at = self.clock()

    def insert_events(self, events: Sequence[AuditEventSnapshot], *, seen: int) -> None:
        """One batch in one statement; keys already stored are skipped by the unique
        constraint (ON CONFLICT DO NOTHING), and RETURNING counts what was new. `seen`:
        records the provider read for this batch (some it may have dropped)."""
        self.counts.events_seen += seen
        if self.customer_by_account is None or self.connector_by_guid is None:
            self.customer_by_account = dict(
                AccountLink.objects.filter(
                    connection=self.connection, state=AccountLink.State.LINKED
                ).values_list("external_id", "customer_id")
            )
            self.connector_by_guid = dict(
                BackupConnector.objects.filter(connection=self.connection).values_list(
                    "external_id", "pk"
                )
            )
            self._connectors_read_at = self.clock()
        customer_by_account, connector_by_guid = self.customer_by_account, self.connector_by_guid
        by_key: dict[str, AuditEventSnapshot] = {}
        for event in events:
            by_key.setdefault(event.dedup_key, event)
        if not by_key:
            return
        self._learn_connectors({event.connector_external_id for event in by_key.values()})
        rows = [
            {
                "connection_id": self.connection.pk,
                "customer_id": customer_by_account.get(event.account_external_id),
                "connector_id": connector_by_guid.get(event.connector_external_id)
                if event.connector_external_id
                else None,
                "account_external_id": event.account_external_id[:100],
                "connector_external_id": event.connector_external_id[:100],
                "occurred_at": event.occurred_at,
                "category": event.category,
                "area": event.area[:120],
                "message": event.message,
                "actor": event.actor[:255],
                "succeeded": event.succeeded,
                "allowed": event.allowed,
                "client_ip": event.client_ip[:64],
                "operation": event.operation[:120],
                "method": event.method[:16],
                "metadata": event.metadata,
                "is_own_read": event.is_own_read,
                "dedup_key": key,
                "created_at": self.now,
            }
            for key, event in by_key.items()
        ]
        inserted = set(
            insert_rows(
                BackupAuditEvent,
                rows,
                conflict="(connection_id, dedup_key)",
                returning="dedup_key",
            )
        )
        own = sum(1 for key in inserted if by_key[key].is_own_read)
        self.counts.own_reads_added += own
        self.counts.events_added += len(inserted) - own


def relink_events(
    connection: Connection,
    moved_accounts: dict[str, int | None],
    *,
    unknown_connectors: bool = True,
) -> int:
    """Give stored audit events what was not known when they were inserted: the
    connector (its account's connector list could not be read then) and, for accounts
    whose customer changed, the new customer. Two set-based UPDATEs, each on its own
    index (the first touches only events it can link); returns how many changed."""
    changed = 0
    if unknown_connectors:
        changed += link_unknown_connectors(connection)
    if moved_accounts:
        # Index audit_account_idx: the events of one account of one connection.
        changed += BackupAuditEvent.objects.filter(
            connection_id=connection.pk, account_external_id__in=list(moved_accounts)
        ).update(
            customer_id=Case(
                *[
                    When(account_external_id=account, then=Value(customer_id))
                    for account, customer_id in moved_accounts.items()
                ],
                output_field=BigIntegerField(),
            )
        )
    return changed


def link_unknown_connectors(connection: Connection) -> int:
    """Stored events of the connection whose connector was unknown when they arrived get
    it, in one `UPDATE … FROM` join (index audit_unlinked_connector_idx finds only the
    events still without their connector; the connectors' unique (connection, external
    id) index the match). A join, not a correlated subquery: after a first sync that
    stored its audit log while its connectors were being read, that is tens of
    thousands of rows, and the subquery took seconds for what the join does at once."""
    return fill_foreign_key(
        BackupAuditEvent,
        "connector",
        by="connector_external_id",
        target_key="external_id",
        scope="connection",
        scope_value=connection.pk,
    )
