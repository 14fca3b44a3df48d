"""The vendor-neutral objects a provider returns from `collect()`, and the provider side
of a sync.

A provider (keepit/, or a second vendor beside it) reads its vendor and describes what
it found in Vectis's vocabulary: accounts, their connectors and backup statuses, and
audit events. It writes no table: backups/ingest.py writes these objects, the same way
for every vendor, and backups/runner.py runs the sync around them.

What could not be read is said, never guessed: an account whose connector list failed
has `connectors=None` (its data stays as it was), a connector whose status failed has
`status=None` (its last known status stays).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from integrations.models import Connection


@dataclass(frozen=True)
class StatusSnapshot:
    """The latest backup status of one connector."""

    status: str  # a BackupStatus value
    health: str = ""
    reason: str = ""  # the vendor's code, raw
    reason_text: str = ""  # the vendor's reason in words
    reason_needs_action: bool = False  # someone must fix something (not just lateness)
    last_backup_at: datetime | None = None
    last_success_at: datetime | None = None  # the last complete backup
    last_snapshot_size: int | None = None


@dataclass(frozen=True)
class ConnectorSnapshot:
    external_id: str
    name: str
    kind: str  # a ConnectorKind value
    vendor_type: str = ""
    accessible: bool = True
    deletion_scheduled_at: datetime | None = None
    vendor_created_at: datetime | None = None
    status: StatusSnapshot | None = None  # None: not readable this time


@dataclass(frozen=True)
class AccountSnapshot:
    """One vendor account under the connection (a customer's tenant)."""

    external_id: str
    company_name: str = ""
    contact_name: str = ""
    email: str = ""
    connectors: tuple[ConnectorSnapshot, ...] | None = ()  # None: could not be read
    error: str = ""  # why part of it could not be read ("" when all of it was)

    @property
    def display_name(self) -> str:
        """Company name, falling back to the contact's name, e-mail, then the id."""
        return self.company_name or self.contact_name or self.email or self.external_id


@dataclass(frozen=True)
class AuditEventSnapshot:
    """One vendor audit-log record. Vendors may give no id: `dedup_key` is the
    provider's deterministic key, unique per connection."""

    dedup_key: str
    occurred_at: datetime
    account_external_id: str = ""
    connector_external_id: str = ""
    category: str = "other"  # an AuditCategory value
    area: str = ""
    message: str = ""
    actor: str = ""
    succeeded: bool | None = None
    allowed: bool | None = None
    client_ip: str = ""
    operation: str = ""
    method: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    is_own_read: bool = False  # the vendor's record of one of Vectis's own API reads


@dataclass(frozen=True)
class AuditBatch:
    """Audit events to store together, and the provider's sync state to commit in the
    same transaction (its cursor, or where to resume): a run stopped after this batch
    resumes after it."""

    events: list[AuditEventSnapshot]
    sync_state: dict[str, Any]
    #: Records the provider read for this batch (more than `events` when it dropped some,
    #: e.g. Vectis's own reads it was told not to store).
    seen: int = 0
    #: What the run is reading now (for the sentence of a run stopped half-way).
    phase: str = ""


class SyncProgress:
    """What a running sync is doing, for progress output and for the sentence a run
    stopped half-way ends with."""

    def __init__(self, report: Callable[[str, int, int], None] | None = None) -> None:
        self.phase = "the accounts"
        self._report = report or (lambda phase, done, total: None)

    def __call__(self, phase: str, done: int, total: int) -> None:
        self._report(phase, done, total)


@dataclass
class Collection:
    """One sync's reading of the vendor, opened by `collect()`. The runner asks for the
    inventory first, whole (`read_inventory`, which may raise CollectError); then for the
    audit log, a stream of batches read while they are stored (memory stays flat).
    Whatever happens, the runner can still ask how many requests were sent, and closes
    it once."""

    inventory: Callable[[], list[AccountSnapshot]]
    audit: Callable[[], Iterator[AuditBatch]]
    #: Requests sent to the vendor so far (the run records the total).
    requests: Callable[[], int] = lambda: 0
    #: Counts only the provider knows (records read, own reads not stored, …).
    counts: dict[str, int] = field(default_factory=dict)
    #: Release the vendor client (and stop any reader); called once, however the run ends.
    close: Callable[[], None] = lambda: None
    #: What `read_inventory` returned (empty until then).
    accounts: list[AccountSnapshot] = field(default_factory=list)

    def read_inventory(self) -> list[AccountSnapshot]:
        self.accounts = self.inventory()
        return self.accounts

    @property
    def failed_accounts(self) -> dict[str, str]:
        """Accounts (id -> sentence naming it) of which something could not be read."""
        return {
            account.external_id: f"{account.display_name} ({account.external_id}): {account.error}"
            for account in self.accounts
            if account.error
        }


class CollectError(Exception):
    """The vendor could not be read at all (its account list failed): the run fails with
    `sentence` and nothing is written."""

    def __init__(self, sentence: str) -> None:
        super().__init__(sentence)
        self.sentence = sentence


class AuditError(Exception):
    """The audit stream stopped on a vendor error: what was stored stays, the run ends
    partial with `sentence`."""

    def __init__(self, sentence: str) -> None:
        super().__init__(sentence)
        self.sentence = sentence


class SyncProvider(Protocol):
    """The provider side of a sync (integrations.base.Provider adds the rest)."""

    kind: str
    name: str

    def collect(
        self, connection: Connection, *, now: datetime, progress: SyncProgress
    ) -> Collection:
        """Open one sync's reading of the vendor (cheap: nothing is read yet). Raises
        `CollectError` when the stored settings cannot be used; the inventory raises it
        when nothing can be read, the audit stream `AuditError` when it stops on a vendor
        error."""
        ...
