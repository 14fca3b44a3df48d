"""The vendor-neutral objects a provider returns from `collect()`, and the provider side
of a sync.

A provider (keepit/, or a second vendor beside it) reads its vendor and describes what
it found in Vectis's vocabulary: accounts (with their seats and deletion date), their
connectors, backup statuses and daily job outcomes, audit events, and the connection's
own credential. It writes no table: backups/ingest.py writes these objects, the same way
for every vendor, and backups/runner.py runs the sync around them.

What could not be read is said, never guessed: an account whose connector list failed
has `connectors=None` (its data stays as it was), a connector whose status failed has
`status=None` (its last known status stays).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
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
    # The vendor's error code for the connector (e.g. from a device status), and what to
    # do about it: its sentence and the vendor's help article ("" when there is none).
    error_code: str = ""
    fix_text: str = ""
    help_url: str = ""
    help_label: str = ""
    error_checked_at: datetime | None = None  # when the vendor was asked for the code


@dataclass(frozen=True)
class JobFailureSnapshot:
    """The latest unsuccessful or incomplete backup job of a day, as far as known."""

    at: datetime  # when the job ended (exact) or, unknown, when the sync first saw it
    outcome: str  # a JobOutcome value: incomplete / failed
    error: str = ""  # the vendor's error sentence, "" when it gave none
    exact: bool = True  # False: the vendor's job history did not say (asked again next sync)


@dataclass(frozen=True)
class JobDaySnapshot:
    """A connector's backup jobs of one UTC day, by outcome, as read this sync.

    `closed`: read after the day ended (final). `failure`: the latest job that failed or
    ended incomplete since the last sync, when there is a new one."""

    day: date
    successful: int = 0
    incomplete: int = 0
    unsuccessful: int = 0
    cancelled: int = 0
    in_progress: int = 0
    closed: bool = False
    last_job_end_at: datetime | None = None
    failure: JobFailureSnapshot | None = None


@dataclass(frozen=True)
class SeatSnapshot:
    """One licensed resource of an account: usage against the vendor's limit."""

    resource: str  # the vendor's name, raw
    label: str
    usage: int
    limit: int | None = None  # None: unlimited
    violated: bool = False
    grace_expires_at: datetime | None = None


@dataclass(frozen=True)
class CredentialSnapshot:
    """What the vendor says about the credential a connection signs in with."""

    kind: str  # "api_token" or "username_password"
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    found: bool = True  # False: the vendor listed no token of this login (expiry unknown)
    note: str = ""


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
    # The UTC days whose job outcomes were read this sync (none: not read this time).
    jobs: tuple[JobDaySnapshot, ...] = ()


@dataclass(frozen=True)
class AccountSnapshot:
    """One vendor account under the connection (a customer's tenant)."""

    external_id: str
    company_name: str = ""
    contact_name: str = ""
    email: str = ""
    connectors: tuple[ConnectorSnapshot, ...] | None = ()  # None: could not be read
    error: str = ""  # why part of it could not be read ("" when all of it was)
    deletion_scheduled_at: datetime | None = None  # the vendor will delete the account
    # Every licensed resource (None: not read this time) ...
    seats: tuple[SeatSnapshot, ...] | None = None
    # ... and, read more often, the ones over their limit (None: not read this time).
    seat_violations: tuple[SeatSnapshot, ...] | None = None
    # When the provider read its connector list (None: it did not, or does not say);
    # recorded on the account link, for a provider that reads the list less often.
    connectors_listed_at: datetime | None = None

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


@dataclass(frozen=True)
class AccountPlan:
    """One account as the planner lists it: what Vectis stores about the account itself
    (`account`, whose `connectors` are not read yet) and what the provider needs to read
    the rest later, maybe in another process (`payload`, JSON)."""

    account: AccountSnapshot
    payload: dict[str, Any]


@dataclass
class Collection:
    """One sync's reading of the vendor, opened by `collect()`. Nothing is read until the
    runner asks. The accounts come one of two ways:

    - **in parts** (`plan` and `read_accounts`): `plan()` lists every account (cheap: the
      vendor's account list), then `read_accounts(payloads)` reads the connectors,
      statuses and the rest of some of them — a part of a few hundred, perhaps in another
      Celery task — so a large MSP is read by several workers and memory stays flat;
    - **whole** (`inventory`): every account with everything, in one call (a small
      vendor, or a test).

    Then the audit log: a stream of batches read while they are stored. `plan` and
    `inventory` raise CollectError when nothing can be read. Whatever happens, the
    runner can still ask how many requests were sent, and closes it once."""

    audit: Callable[[], Iterator[AuditBatch]]
    #: The audit stream has a batch (or its end) ready: taking it will not wait. Lets
    #: one process store the audit log while it reads the accounts.
    audit_ready: Callable[[], bool] = lambda: True
    inventory: Callable[[], list[AccountSnapshot]] | None = None
    plan: Callable[[], list[AccountPlan]] | None = None
    #: (payloads, the part's progress) -> the accounts read whole.
    read_accounts: Callable[[list[dict[str, Any]], SyncProgress], list[AccountSnapshot]] | None = (
        None
    )
    #: Requests sent to the vendor so far (the run records the total).
    requests: Callable[[], int] = lambda: 0
    #: Counts only the provider knows of its accounts (health read one by one, …) ...
    counts: dict[str, int] = field(default_factory=dict)
    #: ... and of its audit log (own reads not stored, …).
    audit_counts: dict[str, int] = field(default_factory=dict)
    #: Release the vendor client (and stop any reader); called once, however the run ends.
    close: Callable[[], None] = lambda: None
    #: What the vendor says about the connection's own credential (None: not read).
    credential: Callable[[], CredentialSnapshot | None] = lambda: None
    #: What could not be read that belongs to no account (the run ends partial with them).
    problems: list[str] = field(default_factory=list)
    #: What the vendor does not offer these credentials (said, but not a failure).
    notes: Callable[[], list[str]] = lambda: []
    #: Set how many requests may be in flight (None: the provider cannot say): lets a
    #: sync give part of its budget to a process reading the audit log.
    budget: Callable[[int], None] | None = None
    #: ... and how many it allows when nobody changed it.
    request_budget: int = 0
    #: What `read_inventory` returned (empty until then).
    accounts: list[AccountSnapshot] = field(default_factory=list)

    @property
    def in_parts(self) -> bool:
        return self.plan is not None and self.read_accounts is not None

    def read_inventory(self) -> list[AccountSnapshot]:
        """Every account with everything, whichever way the provider reads them (whole,
        or planned and then read in one go)."""
        if self.inventory is not None:
            self.accounts = self.inventory()
        elif self.plan is not None and self.read_accounts is not None:
            payloads = [plan.payload for plan in self.plan()]
            self.accounts = self.read_accounts(payloads, SyncProgress())
        else:
            raise TypeError("A Collection needs `inventory`, or `plan` and `read_accounts`.")
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
        self,
        connection: Connection,
        *,
        now: datetime,
        progress: SyncProgress,
        fresh: bool = False,
    ) -> Collection:
        """Open one sync's reading of the vendor (cheap: nothing is read yet). Raises
        `CollectError` when the stored settings cannot be used; the inventory raises it
        when nothing can be read, the audit stream `AuditError` when it stops on a vendor
        error. `fresh`: someone asked for this sync (Sync now, the command line): what a
        provider reads less often than every sync (Keepit's connector lists) is read now."""
        ...
