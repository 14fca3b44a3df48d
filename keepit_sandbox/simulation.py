"""The simulated MSP behind the Keepit sandbox: accounts, connectors, backups, jobs, seats,
tokens and the audit log.

Everything is a pure function of the seed, the sizes and the sandbox clock, so the same
flags give the same data, and time moving on gives new backups, new audit records and
changing health. Nothing is precomputed per event: a day of one account's audit log is
generated on demand from a hash of (seed, account, day), which keeps a 2,000-account,
14-day log (700,000 records) cheap to page through.

Backup jobs are the connector's backup *slots*: slot k ends at `phase + k * cadence` (that
is when its snapshot exists) and starts 10-50 minutes earlier (a hash of the slot). Its
outcome is a pure function of (scenario, slot) plus the test overrides of
`set_job_outcome`, and `backup_state` is derived from the same function: the last
snapshot is the newest successful or incomplete job, the last complete one the newest
successful job. So job history, job counts, the backup summary and health always agree,
and counting a day of jobs only looks at that day's slots.

Outcomes by scenario (where Keepit is silent the sandbox chose):

- healthy, GENERIC, INCOMPLETECONFIG_O365_ADMIN, GRACETIMERSTARTED, the unknown reason,
  inaccessible and deletion-scheduled connectors: every job succeeds.
- flapping: jobs ending in one of its "skip" 3-hour periods (30 %) fail (throttled) or,
  one in three of those, are cancelled (ran into the next run); while the newest job
  failed the connector is unhealthy with reason GENERIC.
- partial, QUOTAVIOLATED: in each cycle of 5, 9 or 13 slots one job is successful and
  the rest are incomplete (a `succeeded` timestamp and an error sentence), so the newest
  snapshot is usually partial and the last complete one up to 12 slots older.
- BADTOKEN, BADLOGIN, NONADMINLOGIN: jobs ending after `stopped_at` fail with an
  authentication sentence (Keepit keeps trying).
- stalled: no jobs end after `stopped_at` (the connector stopped checking in).
- onboarding: one long initial job from five minutes after creation to the first
  complete backup (two days later), then normal jobs.

A job counts as in a window [from, to) by its *start*; at the sandbox's now a job that
has not started is `scheduled` (the sandbox schedules at most seven days ahead), one
that started but has not ended is `in-progress`, and finished jobs count by outcome.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
import threading
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

DAY = 86400
HOUR = 3600
# A reason code that is not in Keepit's published list (Keepit may add codes any time).
UNKNOWN_REASON = "NEWFANGLEDREASON"
# An error code that is not in Keepit's published list (the one the unknown reason gets).
UNKNOWN_ERROR_CODE = "E_BRAND_NEW_CODE"
AUTH_SCENARIOS = frozenset({"BADTOKEN", "BADLOGIN", "NONADMINLOGIN"})

# Job outcomes (the vocabulary of Keepit's job counts) and job types (Keepit's JOB_TYPES).
JOB_OUTCOMES = ("successful", "incomplete", "unsuccessful", "cancelled")
JOB_STATES = ("scheduled", "in-progress", *JOB_OUTCOMES)
JOB_TYPES = ("backup", "restore", "srestore", "pstrestore", "zipdownload", "pmrestore")
JOB_MIN_SECONDS = 10 * 60
JOB_MAX_SECONDS = 50 * 60
# The initial job of an onboarding connector starts this long after the connector.
INITIAL_JOB_DELAY = 5 * 60
# How far ahead the sandbox has jobs scheduled.
SCHEDULE_AHEAD = 7 * DAY
THROTTLED = "The SaaS application throttled the backup; it will be retried."
OVERRUN = "The backup was cancelled: it was still running when the next one was due."
QUOTA_ERROR = "Seat limit exceeded: new users are not backed up"
AUTH_ERRORS = {
    "BADTOKEN": (
        "Authentication failed: the connector's access token was revoked or has expired; "
        "reauthenticate the connector."
    ),
    "BADLOGIN": "Authentication failed: the SaaS application refused the connector's sign-in.",
    "NONADMINLOGIN": (
        "Authentication failed: the connector signs in with an account that is not a "
        "global administrator."
    ),
}
PARTIAL_ERRORS = (
    "{n} items could not be backed up: the mailbox is over its size limit",
    "{n} items could not be backed up: the file is larger than the service lets us export",
    "{n} items could not be backed up: the item was locked by another application",
)
# The sentence a `set_job_outcome` without `error` gets.
DEFAULT_JOB_ERRORS = {
    "successful": "",
    "incomplete": "12 items could not be backed up.",
    "unsuccessful": "The backup failed: an unexpected error occurred.",
    "cancelled": "The backup was cancelled by a user.",
}
# Keepit's device-status error codes (C4) per scenario; the rest have none.
ERROR_CODES = {
    "BADTOKEN": "E_REVOKED",
    "BADLOGIN": "E_LOGIN",
    "NONADMINLOGIN": "E_LOGIN_ADMIN",
    "QUOTAVIOLATED": "E_QUOTA",
    "GRACETIMERSTARTED": "E_QUOTA",
    "INCOMPLETECONFIG_O365_ADMIN": "E_INCOMPLETE_CONNECTOR_CONFIG",
    "GENERIC": "E_START",
    "stalled": "E_TERM",
    UNKNOWN_REASON: UNKNOWN_ERROR_CODE,
}
# Device status numbers: Keepit documents only 7 (Salesforce API limit, for sforce); the
# others are the sandbox's own: 0 idle, 1 the run that hit an error, 3 stopped by it.
STATUS_OK = 0
STATUS_RUN = 1
STATUS_ERROR = 3
STATUS_SFORCE_API_LIMIT = 7

# Seat resources (C7): the resource-name key and the seat group of each connector kind
# (type, or agent-type for dsl). Kinds without a seat group of Keepit's 14 use their own
# name as the group.
SEAT_KEYS: dict[str, str] = {
    "o365-admin": "o365-admin",
    "azure-ad": "azuread",
    "gsuite": "gsuite",
    "sforce": "sforce",
    "dynamics365": "dynamics365",
    "powerbi": "powerbi",
    "zendesk": "zendesk",
    "azure-do": "azuredo",
}
SEAT_GROUPS: dict[str, str] = {
    "o365-admin": "o365-admin",
    "azure-ad": "azuread",
    "gsuite": "gsuite",
    "sforce": "salesforce",
    "dynamics365": "dynamics365",
    "powerbi": "powerbi",
    "zendesk": "zendesk",
    "azure-do": "azuredo",
    "okta": "okta",
    "jira": "jira",
    "jsm": "jira",
    "confluence": "confluence",
    "bamboohr": "bamboohr",
    "docusign": "docusign",
    "miro": "miro",
}
SEAT_GROUP_NAMES = (
    "o365-admin",
    "gsuite",
    "salesforce",
    "azuread",
    "azuredo",
    "dynamics365",
    "powerbi",
    "zendesk",
    "okta",
    "jira",
    "confluence",
    "bamboohr",
    "docusign",
    "miro",
)
M365_MAILBOX_SEATS = "m365-mailboxonedrive-total"
READABLE_RESOURCES = {M365_MAILBOX_SEATS: "Microsoft 365 mailbox and OneDrive seats"}
# Every this many accounts one is scheduled for deletion, from the account with this index
# on (Vectis reads the list with all=1, which includes them).
DELETION_EVERY = 25
DELETION_FROM = 0

# (type, agent-type) of every connector kind in keepit-api.md §5.
CONNECTOR_TYPES: list[tuple[str, str]] = [
    ("o365-admin", ""),
    ("azure-ad", ""),
    ("gsuite", ""),
    ("sforce", ""),
    ("dynamics365", ""),
    ("powerbi", ""),
    ("zendesk", ""),
    ("azure-do", ""),
    ("dsl", "okta"),
    ("dsl", "jira"),
    ("dsl", "jsm"),
    ("dsl", "confluence"),
    ("dsl", "bamboohr"),
    ("dsl", "docusign"),
    ("dsl", "miro"),
    ("dsl", "gitlab"),
    ("dsl", "github"),
    ("dsl", "monday"),
    ("dsl", "autodesk-forma"),
]
PRODUCT_LABELS: dict[str, str] = {
    "o365-admin": "Microsoft 365",
    "azure-ad": "Entra ID",
    "gsuite": "Google Workspace",
    "sforce": "Salesforce",
    "dynamics365": "Dynamics 365",
    "powerbi": "Power BI",
    "zendesk": "Zendesk",
    "azure-do": "Azure DevOps",
    "okta": "Okta",
    "jira": "Jira",
    "jsm": "Jira Service Management",
    "confluence": "Confluence",
    "bamboohr": "BambooHR",
    "docusign": "Docusign",
    "miro": "Miro",
    "gitlab": "GitLab",
    "github": "GitHub",
    "monday": "Monday",
    "autodesk-forma": "Autodesk Forma",
    "newsaas": "NewSaaS",
}

COMPANY_BASES = [
    "Contoso",
    "Fabrikam",
    "Northwind Traders",
    "Adventure Works",
    "Tailspin Toys",
    "Wide World Importers",
    "Litware",
    "Proseware",
    "Woodgrove Bank",
    "Alpine Ski House",
    "Blue Yonder Airlines",
    "Coho Winery",
    "Fourth Coffee",
    "Lucerne Publishing",
    "Margie's Travel",
    "Trey Research",
    "Wingtip Toys",
    "Humongous Insurance",
    "City Power & Light",
    "Consolidated Messenger",
    "Relecloud",
    "VanArsdel",
    "Smith & Sons",
    "Müller Maschinenbau",
    "Café Crème",
    "Åkerlund & Rausing",
    "Søren Jensen Byg",
    "Élan Vital",
    "Zürich Treuhand",
    "Næstved Tømrer",
    "O'Brien Plumbing",
    "Ferreira & Filhos",
    "Nordlys Energi",
    "Großmann Logistik",
    "Baker & McKenzie Dental",
    "Łódź Software",
    "São Paulo Imports",
    "Dvořák Audio",
]
COMPANY_QUALIFIERS = [
    "",
    "Holdings",
    "Group",
    "Nordic",
    "East",
    "West",
    "Labs",
    "Partners",
    "Services",
    "Digital",
    "Consulting",
    "Logistics",
    "Health",
    "Legal",
    "Retail",
    "Foods",
]
LEGAL_SUFFIXES = [
    "",
    " Inc",
    " Inc.",
    ", Inc.",
    " LLC",
    " Ltd",
    " Limited",
    " GmbH",
    " A/S",
    " ApS",
    " AB",
    " BV",
    " B.V.",
    " SA",
    " S.A.",
    " Pty Ltd",
    " Corp.",
    " AG",
    " Oy",
]
FIRST_NAMES = [
    "Anna",
    "Bjørn",
    "Chloé",
    "David",
    "Emma",
    "François",
    "Greta",
    "Hiroshi",
    "Ines",
    "Jörg",
    "Karin",
    "Liam",
    "María",
    "Noah",
    "Olivia",
    "Per",
    "Quinn",
    "Rosa",
    "Søren",
]
LAST_NAMES = [
    "Andersen",
    "Brown",
    "Castillo",
    "Dubois",
    "Eriksson",
    "Fischer",
    "García",
    "Hansen",
    "Ito",
    "Jensen",
    "Kowalski",
    "Larsen",
    "Müller",
    "Nielsen",
    "O'Neill",
    "Petersen",
]

# (area, message, acl, method, failure message or "") — raw areas as Keepit writes them,
# including ones the client must map by keyword and an unknown one ("Miscellaneous").
AUDIT_TEMPLATES: list[tuple[str, str, str, str, str]] = [
    ("User events", "User signed in", "Login", "post", "Failed sign-in: wrong password"),
    ("User events", "API token created", "CreateToken", "post", ""),
    ("User events", "User role changed to BackupAdmin", "UpdateUserRole", "put", ""),
    ("Account events", "Company name updated", "UpdateContact", "put", ""),
    ("Account events", "Contact e-mail changed", "UpdateContact", "put", ""),
    ("Subaccount events", "Subaccount settings updated", "UpdateUser", "put", ""),
    ("Backup/Restore", "Restore job completed", "Restore", "post", "Restore job failed"),
    ("Backup/Restore", "Manual backup requested", "StartJob", "post", "Backup job failed"),
    (
        "Connector events",
        "Connector backup configuration changed",
        "UpdateDevice",
        "put",
        "Connector configuration change failed",
    ),
    ("Connector events", "Connector renamed", "UpdateDevice", "put", ""),
    ("Connector events", "Retention changed to P1Y", "UpdateDevice", "put", ""),
    ("Recovery", "Snapshot browsed", "Browse", "get", ""),
    ("Recovery", "Download job finished", "ZipDownload", "post", "Download job failed"),
    ("Security", "MFA enabled for user", "UpdateMfa", "put", ""),
    ("Security", "SSO configuration changed", "UpdateSso", "put", ""),
    ("Compliance", "Right-to-be-forgotten label applied", "Rtbf", "post", ""),
    (
        "Connection events",
        "Connection app registration renewed",
        "UpdateConnection",
        "put",
        "Connection consent failed",
    ),
    ("Reporting", "Backup report generated", "Report", "get", ""),
    ("Miscellaneous", "Terms of service accepted", "AcceptTos", "post", ""),
]
AREAS_WITH_DEVICE = {"Backup/Restore", "Connector events", "Recovery"}


def _hash_int(*parts: object) -> int:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def make_guid(seed: int, *parts: object) -> str:
    """A Keepit-shaped GUID: three groups of six lower-case letters and digits."""
    value = _hash_int(seed, "guid", *parts) | (1 << 63)
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    chars = []
    for _ in range(18):
        value, index = divmod(value, 36)
        chars.append(alphabet[index])
        if value == 0:
            value = _hash_int(seed, "guid-more", *parts, len(chars))
    return "".join(chars[0:6]) + "-" + "".join(chars[6:12]) + "-" + "".join(chars[12:18])


def make_job_guid(seed: int, connector: str, slot: int) -> str:
    """A job GUID: four groups of six (the shape of Keepit's job ids)."""
    head = make_guid(seed, "job", connector, slot)
    return head + "-" + make_guid(seed, "job-tail", connector, slot)[:6]


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SandboxClock:
    """The sandbox's notion of now: real time from `start`, times `speed`, plus manual
    advances (tests and the benchmark move it on with `advance`). `speed=0` freezes it."""

    def __init__(self, start: datetime | None = None, speed: float = 1.0) -> None:
        self.start = (start or datetime.now(UTC)).timestamp()
        self.speed = speed
        self._origin = time.monotonic()
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self.start + (time.monotonic() - self._origin) * self.speed + self._offset

    def now_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._offset += delta.total_seconds()


@dataclass(frozen=True)
class SandboxConfig:
    seed: int = 1
    region: str = "us-dc"
    accounts: int = 25
    connectors_per_account: int = 4
    events_per_account_per_day: int = 10
    username: str = "msp-admin@example.com"
    password: str = "sandbox-password"
    token_login: str = "vectis-api-token"
    token_password: str = "sandbox-token-password"
    own_read_audit: bool = True
    audit_history_days: int = 30
    # The API token (P1Y) expires this many days after the anchor (default: 65).
    token_expires_in_days: int = 65


@dataclass
class SimAccount:
    index: int
    guid: str
    company_name: str
    full_name: str
    email: str
    created: float


@dataclass
class SimConnector:
    account: SimAccount
    index: int
    guid: str
    name: str
    type: str
    agent_type: str
    created: float
    scenario: str
    cadence: int  # seconds between backups
    phase: int
    stopped_at: float | None = None  # backups stopped (stalled, lost credentials)
    accessible: bool = True
    deletion_deadline: float | None = None
    base_size: int = 0


@dataclass
class BackupState:
    last_snapshot: float | None
    last_complete: float | None
    size: int
    size_change: int
    health: str
    reason: str


@dataclass(frozen=True)
class SimJob:
    """One backup job: it ends at its slot's time and starts `end - duration`. `outcome`
    is what it ends with; before `end` the job is scheduled or in progress (`state`)."""

    connector: SimConnector
    slot: int
    guid: str
    start: float
    end: float
    outcome: str
    error: str

    def state(self, now: float) -> str:
        """scheduled, in-progress, or the outcome once the job has ended."""
        if self.start > now:
            return "scheduled"
        if now < self.end:
            return "in-progress"
        return self.outcome

    def progress(self, now: float) -> float:
        if now >= self.end:
            return 1.0
        if now <= self.start:
            return 0.0
        return min(0.99, round((now - self.start) / (self.end - self.start), 2))


@dataclass(frozen=True)
class JobOverride:
    since: float
    outcome: str
    error: str


@dataclass(frozen=True)
class SeatResource:
    """One seat resource of an account (`/resources`) and its seat group (`/expirations`)."""

    name: str
    group: str
    readable_name: str
    usage: int
    limit: int | None
    grace_expires: float | None = None

    @property
    def violated(self) -> bool:
        return self.limit is not None and self.usage > self.limit


@dataclass
class SimToken:
    """A token of the parent account's user (`/tokens`): primary, API or session token."""

    guid: str
    aname: str
    descr: str
    primary: bool
    created: float
    lifetime: str | None
    expires: float | None
    acl: str


@dataclass
class _AuditQuery:
    """A cached audit-filter result: cumulative counts per (day, account) chunk plus the
    own-read records captured when the first page was asked for."""

    start: float
    end: float
    chunks: list[tuple[int, int]]  # (day number, account index)
    cumulative: list[int]
    dynamic: list[dict[str, str]]
    total_generated: int = 0


@dataclass
class SandboxMsp:
    """One simulated MSP: a parent account in one region and its customers' accounts."""

    config: SandboxConfig
    clock: SandboxClock
    parent: SimAccount = field(init=False)
    accounts: list[SimAccount] = field(init=False)
    connectors: dict[str, list[SimConnector]] = field(init=False)
    _by_guid: dict[str, SimAccount] = field(init=False)
    _connector_by_guid: dict[str, SimConnector] = field(init=False)
    _own_reads: deque[dict[str, str]] = field(init=False)
    _own_reads_lock: threading.Lock = field(init=False)
    _logged: list[dict[str, str]] = field(init=False)
    _queries: OrderedDict[tuple[str, ...], _AuditQuery] = field(init=False)
    _chunks: OrderedDict[tuple[int, int], list[dict[str, str]]] = field(init=False)
    _chunks_lock: threading.Lock = field(init=False)
    _job_overrides: dict[str, list[JobOverride]] = field(init=False)
    _seat_overrides: dict[str, dict[str, SeatResource]] = field(init=False)
    _seats_cleared: set[str] = field(init=False)
    _deletions: dict[str, float | None] = field(init=False)
    _tokens: dict[str, SimToken] = field(init=False)
    _last_use: dict[str, float] = field(init=False)
    _state_lock: threading.Lock = field(init=False)

    @property
    def anchor(self) -> float:
        """Midnight (UTC) of the day the sandbox started: what "two days ago" in the
        generated data is relative to. Day-aligned, so a sandbox restarted later the same
        day (or with --start moved on) serves the same MSP, only further in time."""
        return (self.clock.start // DAY) * DAY

    def __post_init__(self) -> None:
        seed = self.config.seed
        start = self.anchor
        self.parent = SimAccount(
            index=-1,
            guid=make_guid(seed, "parent"),
            company_name="Vectis Demo MSP",
            full_name="Morgan Admin",
            email=self.config.username,
            created=start - 900 * DAY,
        )
        self.accounts = [self._make_account(i) for i in range(self.config.accounts)]
        self._by_guid = {a.guid: a for a in self.accounts}
        self._by_guid[self.parent.guid] = self.parent
        self.connectors = {a.guid: self._make_connectors(a) for a in self.accounts}
        self.connectors[self.parent.guid] = []
        self._connector_by_guid = {
            c.guid: c for connectors in self.connectors.values() for c in connectors
        }
        self._own_reads = deque(maxlen=500_000)
        self._own_reads_lock = threading.Lock()
        self._logged = []
        self._queries = OrderedDict()
        self._chunks = OrderedDict()
        self._chunks_lock = threading.Lock()
        self._job_overrides = {}
        self._seat_overrides = {}
        self._seats_cleared = set()
        self._deletions = {}
        self._last_use = {}
        self._state_lock = threading.Lock()
        self._tokens = self._make_tokens()

    # --- accounts and connectors -----------------------------------------------------------

    def _company_name(self, i: int) -> str:
        seed = self.config.seed
        bases, quals = len(COMPANY_BASES), len(COMPANY_QUALIFIERS)
        base = COMPANY_BASES[i % bases]
        qualifier = COMPANY_QUALIFIERS[(i // bases) % quals]
        round_number = i // (bases * quals)
        name = f"{base} {qualifier}".strip()
        if round_number:
            name = f"{name} {round_number + 1}"
        return name + LEGAL_SUFFIXES[_hash_int(seed, "suffix", i) % len(LEGAL_SUFFIXES)]

    def _make_account(self, i: int) -> SimAccount:
        seed = self.config.seed
        company = self._company_name(i)
        # The variety real MSPs have: exact duplicates, the same company written another
        # way, and accounts with no company name at all (the contact's name stands in).
        if i == 5 or i % 25 == 20:
            company = self._company_name(i - 1)
        elif i == 3 or i % 25 == 12:
            previous = self._company_name(i - 1)
            company = previous.upper().replace(" INC.", "").replace(" LTD", "") + " Limited"
        elif i == 7 or i % 25 == 17:
            company = ""
        first = FIRST_NAMES[_hash_int(seed, "first", i) % len(FIRST_NAMES)]
        last = LAST_NAMES[_hash_int(seed, "last", i) % len(LAST_NAMES)]
        slug = "".join(ch for ch in (company or last).lower() if ch.isascii() and ch.isalnum())
        return SimAccount(
            index=i,
            guid=make_guid(seed, "account", i),
            company_name=company,
            full_name=f"{first} {last}",
            email=f"it@{slug or 'customer'}{i}.example.com",
            created=self.anchor - (60 + _hash_int(seed, "created", i) % 1500) * DAY,
        )

    def _make_connectors(self, account: SimAccount) -> list[SimConnector]:
        seed, i = self.config.seed, account.index
        count = self.config.connectors_per_account
        result = []
        for j in range(count):
            if j == 0:
                kind = CONNECTOR_TYPES[0]
            elif j == 1:
                kind = CONNECTOR_TYPES[1]
            else:
                kind = CONNECTOR_TYPES[(i * 7 + j) % len(CONNECTOR_TYPES)]
            if i % 50 == 9 and j == count - 1:
                kind = ("newsaas", "")  # a type Vectis has never heard of
            result.append(self._make_connector(account, j, kind))
        if i % 10 == 0:
            result.append(self._make_connector(account, count, ("system", "")))
        _ = seed
        return result

    def _make_connector(self, account: SimAccount, j: int, kind: tuple[str, str]) -> SimConnector:
        seed, start = self.config.seed, self.anchor
        guid = make_guid(seed, "connector", account.index, j)
        h = _hash_int(seed, "scenario", guid)
        bucket = h % 100
        label = PRODUCT_LABELS.get(kind[1] or kind[0], kind[0])
        short = (account.company_name or account.full_name).split(",")[0]
        connector = SimConnector(
            account=account,
            index=j,
            guid=guid,
            name=f"{short} {label}" if kind[0] != "system" else "System",
            type=kind[0],
            agent_type=kind[1],
            created=account.created + (h >> 8) % (30 * DAY),
            scenario="healthy",
            cadence=[4, 6, 8, 12][(h >> 16) % 4] * HOUR,
            phase=(h >> 24) % HOUR * 4,
            base_size=(1 + (h >> 32) % 500) * 1024**3 // 10,
        )
        if kind[0] == "system":
            return connector
        if bucket < 65 or 94 <= bucket < 97:
            connector.scenario = "healthy" if bucket < 65 else "flapping"
        elif bucket >= 97:
            # Reasons that need a fix but leave the backups running, and one Keepit may
            # add after Vectis was written (shown raw, counted as needing a look).
            connector.scenario = {
                97: "INCOMPLETECONFIG_O365_ADMIN",
                98: "GRACETIMERSTARTED",
                99: UNKNOWN_REASON,
            }[bucket]
        elif bucket < 72:
            connector.scenario = "partial"
        elif bucket < 77:
            connector.scenario = "onboarding"
            connector.created = start - (2 + (h >> 40) % 38) * HOUR
        elif bucket < 82:
            connector.scenario = "stalled"
            connector.stopped_at = start - (30 + (h >> 40) % 90) * HOUR
        elif bucket < 86:
            connector.scenario = "BADTOKEN"
            connector.stopped_at = start - (10 + (h >> 40) % 50) * HOUR
        elif bucket < 88:
            connector.scenario = "BADLOGIN"
            connector.stopped_at = start - (20 + (h >> 40) % 60) * HOUR
        elif bucket < 90:
            connector.scenario = "QUOTAVIOLATED"
        elif bucket < 91:
            connector.scenario = "GENERIC"
        elif bucket < 92:
            connector.scenario = "NONADMINLOGIN"
            connector.stopped_at = start - (50 + (h >> 40) % 50) * HOUR
        elif bucket < 93:
            connector.accessible = False
        else:
            connector.deletion_deadline = start + 30 * DAY
        return connector

    def account(self, guid: str) -> SimAccount | None:
        return self._by_guid.get(guid)

    def connector(self, guid: str) -> SimConnector | None:
        return self._connector_by_guid.get(guid)

    def is_child(self, guid: str) -> bool:
        account = self._by_guid.get(guid)
        return account is not None and account.index >= 0

    # --- backup jobs -----------------------------------------------------------------------

    def slot_time(self, connector: SimConnector, slot: int) -> float:
        """When backup slot `slot` ends (its snapshot's time)."""
        return float(connector.phase + slot * connector.cadence)

    def _first_slot(self, connector: SimConnector) -> int:
        # A new connector's first backup is an hour after it was created; an onboarding
        # one's first complete backup takes two days.
        wait = 48 * HOUR if connector.scenario == "onboarding" else HOUR
        return math.ceil((connector.created + wait - connector.phase) / connector.cadence)

    def _last_slot(self, connector: SimConnector) -> int | None:
        """The last slot that has a job at all (stalled: none after it stopped)."""
        if connector.scenario == "stalled" and connector.stopped_at is not None:
            return math.floor((connector.stopped_at - connector.phase) / connector.cadence)
        return None

    def _slot_at_or_before(self, connector: SimConnector, moment: float) -> int:
        return math.floor((moment - connector.phase) / connector.cadence)

    def job_start(self, connector: SimConnector, slot: int) -> float:
        end = self.slot_time(connector, slot)
        if connector.scenario == "onboarding" and slot == self._first_slot(connector):
            return connector.created + INITIAL_JOB_DELAY  # the one long initial backup
        spread = JOB_MAX_SECONDS - JOB_MIN_SECONDS + 1
        duration = (
            JOB_MIN_SECONDS + _hash_int(self.config.seed, "job", connector.guid, slot) % spread
        )
        return end - duration

    def _governing(self, connector: SimConnector, start: float) -> JobOverride | None:
        """The `set_job_outcome` call that decides a job starting at `start`: the one with
        the latest `since` at or before it."""
        overrides = self._job_overrides.get(connector.guid)
        if not overrides:
            return None
        index = bisect.bisect_right([o.since for o in overrides], start) - 1
        return overrides[index] if index >= 0 else None

    def _partial_cycle(self, connector: SimConnector) -> tuple[int, int]:
        back = 1 + _hash_int(self.config.seed, "partial", connector.guid) % 3
        length = 4 * back + 1
        return length, _hash_int(self.config.seed, "partial-offset", connector.guid) % length

    def _flap(self, connector: SimConnector, end: float) -> int:
        """0-2: the 3-hour period `end` falls in is a skip period (0 cancels), else 3-9."""
        period = int(end // (3 * HOUR))
        return _hash_int(self.config.seed, "flap", connector.guid, period) % 10

    def _default_outcome(self, connector: SimConnector, slot: int) -> tuple[str, str]:
        """A job's outcome by the connector's scenario alone."""
        end = self.slot_time(connector, slot)
        scenario = connector.scenario
        stopped = connector.stopped_at
        if scenario in AUTH_SCENARIOS and stopped is not None and end > stopped:
            return "unsuccessful", AUTH_ERRORS[scenario]
        if slot == self._first_slot(connector):
            return "successful", ""  # the first full backup always completes
        if scenario == "flapping":
            flap = self._flap(connector, end)
            if flap == 0:
                return "cancelled", OVERRUN
            if flap < 3:
                return "unsuccessful", THROTTLED
        elif scenario in {"partial", "QUOTAVIOLATED"}:
            length, offset = self._partial_cycle(connector)
            if (slot + offset) % length:
                if scenario == "QUOTAVIOLATED":
                    return "incomplete", QUOTA_ERROR
                h = _hash_int(self.config.seed, "partial-error", connector.guid, slot)
                template = PARTIAL_ERRORS[h % len(PARTIAL_ERRORS)]
                return "incomplete", template.format(n=2 + (h >> 8) % 300)
        return "successful", ""

    def job_outcome(self, connector: SimConnector, slot: int) -> tuple[str, str]:
        """(outcome, error sentence) of the job of `slot`; "" for a successful job."""
        override = self._governing(connector, self.job_start(connector, slot))
        if override is not None:
            return override.outcome, override.error
        return self._default_outcome(connector, slot)

    def job(self, connector: SimConnector, slot: int) -> SimJob:
        outcome, error = self.job_outcome(connector, slot)
        return SimJob(
            connector=connector,
            slot=slot,
            guid=make_job_guid(self.config.seed, connector.guid, slot),
            start=self.job_start(connector, slot),
            end=self.slot_time(connector, slot),
            outcome=outcome,
            error=error,
        )

    def jobs_between(
        self, connector: SimConnector, start: float, end: float, *, now: float | None = None
    ) -> list[SimJob]:
        """The backup jobs whose *start* is in [start, end), oldest first. Jobs are
        scheduled at most SCHEDULE_AHEAD past `now` (the clock's now by default)."""
        if connector.type == "system":
            return []
        now = self.clock.now() if now is None else now
        end = min(end, now + SCHEDULE_AHEAD)
        if end <= start:
            return []
        first, last = self._first_slot(connector), self._last_slot(connector)
        low = max(first, math.ceil((start + JOB_MIN_SECONDS - connector.phase) / connector.cadence))
        high = math.floor((end + JOB_MAX_SECONDS - connector.phase) / connector.cadence)
        if last is not None:
            high = min(high, last)
        slots = list(range(low, high + 1))
        if connector.scenario == "onboarding" and not low <= first <= high:
            # The initial job starts two days before it ends, so its slot may lie outside
            # the window's range of slots while its start is in the window.
            slots.insert(0, first)
        jobs = []
        for slot in slots:
            job_start = self.job_start(connector, slot)
            if start <= job_start < end:
                jobs.append(self.job(connector, slot))
        return jobs

    def job_counts(
        self, connector: SimConnector, start: float, end: float, now: float
    ) -> Counter[str]:
        """Jobs starting in [start, end) by state at `now` (see JOB_STATES)."""
        return Counter(job.state(now) for job in self.jobs_between(connector, start, end, now=now))

    def active_jobs(self, connector: SimConnector, now: float) -> list[SimJob]:
        """The jobs running at `now` (the initial job of an onboarding connector may have
        started up to three days before)."""
        recent = self.jobs_between(connector, now - 3 * DAY, now, now=now)
        return [job for job in recent if job.state(now) == "in-progress"]

    def next_job(self, connector: SimConnector, now: float) -> SimJob | None:
        """The next job to start after `now` (within three days: an onboarding connector's
        next job follows its two-day initial one)."""
        ahead = self.jobs_between(connector, now, now + 3 * DAY, now=now)
        return next((job for job in ahead if job.start > now), None)

    def _newest(
        self, connector: SimConnector, slot: int, first: int, *, partial_ok: bool
    ) -> int | None:
        """The newest slot at or before `slot` whose job succeeded (or, with partial_ok,
        left an incomplete snapshot). Jumps over runs of failures it can foresee
        (overrides, lost logins, partial cycles), so it stays cheap however long ago."""
        wanted = {"successful", "incomplete"} if partial_ok else {"successful"}
        for _ in range(10_000):
            if slot < first:
                return None
            override = self._governing(connector, self.job_start(connector, slot))
            if override is not None:
                if override.outcome in wanted:
                    return slot
                # The slot before any job of this override's run can start.
                below = self._slot_at_or_before(connector, override.since + JOB_MAX_SECONDS)
                slot = min(slot - 1, below)
                continue
            # No override decides this slot, so none decides an older one.
            end = self.slot_time(connector, slot)
            scenario = connector.scenario
            stopped = connector.stopped_at
            if scenario in AUTH_SCENARIOS and stopped is not None and end > stopped:
                slot = min(slot - 1, self._slot_at_or_before(connector, stopped))
                continue
            if scenario in {"partial", "QUOTAVIOLATED"} and slot != first:
                length, offset = self._partial_cycle(connector)
                remainder = (slot + offset) % length
                if remainder == 0 or partial_ok:
                    return slot
                slot = max(first, slot - remainder)
                continue
            if self._default_outcome(connector, slot)[0] in wanted:
                return slot
            slot -= 1
        return None

    # --- backups and health ----------------------------------------------------------------

    def backup_state(self, connector: SimConnector, now: float) -> BackupState:
        """Snapshots and health of one connector at `now`, from its finished jobs: the last
        snapshot is the newest successful or incomplete job, the last complete one the
        newest successful job. Health by Keepit's own rule: no successful backup for 24 h
        is unhealthy, 48 h critical; lost login is critical. A scenario's fixed health
        (lost login, seat limit, ...) gives way to the rule once `set_job_outcome` decides
        the newest finished job."""
        first = self._first_slot(connector)
        newest = self._slot_at_or_before(connector, now)
        last = self._last_slot(connector)
        if last is not None:
            newest = min(newest, last)
        last_snapshot = last_complete = None
        newest_outcome = ""
        overridden = False
        if newest >= first:
            complete = self._newest(connector, newest, first, partial_ok=False)
            snapshot = self._newest(connector, newest, first, partial_ok=True)
            last_complete = None if complete is None else self.slot_time(connector, complete)
            last_snapshot = None if snapshot is None else self.slot_time(connector, snapshot)
            newest_outcome = self.job_outcome(connector, newest)[0]
            overridden = self._governing(connector, self.job_start(connector, newest)) is not None
        if connector.scenario == "onboarding" and last_snapshot is None:
            # Onboarding: the initial job leaves a partial snapshot after six hours.
            partial_at = connector.created + 6 * HOUR
            last_snapshot = partial_at if now >= partial_at else None
        age = now - last_complete if last_complete is not None else None
        scenario = "healthy" if overridden else connector.scenario
        health, reason = "healthy", ""
        if scenario in AUTH_SCENARIOS:
            health, reason = "critical", scenario
        elif scenario in {"QUOTAVIOLATED", "INCOMPLETECONFIG_O365_ADMIN"}:
            health, reason = "unhealthy", scenario
        elif scenario == "GRACETIMERSTARTED":
            health, reason = "unhealthy", "GRACETIMERSTARTED"
        elif scenario == UNKNOWN_REASON:
            health, reason = "healthy", UNKNOWN_REASON
        elif scenario == "GENERIC":
            health, reason = "unhealthy", "GENERIC"
        elif age is not None and age > 48 * HOUR:
            health, reason = "critical", "CLOUDNOCHECKIN"
        elif age is not None and age > 24 * HOUR:
            health, reason = "unhealthy", "NOCHECKIN"
        elif scenario == "flapping" and newest_outcome in {"unsuccessful", "cancelled"}:
            health, reason = "unhealthy", "GENERIC"
        elif _hash_int(connector.guid) % 2:
            reason = "OK"
        growth = int((now - connector.created) // DAY) * 1024**2
        size = connector.base_size + growth
        return BackupState(
            last_snapshot=last_snapshot,
            last_complete=last_complete,
            size=size,
            size_change=1024**2 if last_snapshot else 0,
            health=health,
            reason=reason,
        )

    def set_job_outcome(
        self, connector_guid: str, outcome: str, *, since: datetime, error: str = ""
    ) -> None:
        """Tests: every backup job that starts at or after `since` ends with `outcome`
        (successful, incomplete, unsuccessful, cancelled). Calls stack: the one with the
        latest `since` at or before a job's start decides it, so a later "successful"
        recovers. `error` defaults to a sentence per outcome (none for successful). It
        changes outcomes only: it makes no job where the scenario has none (a stalled
        connector stays stopped)."""
        if outcome not in JOB_OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; known: {', '.join(JOB_OUTCOMES)}")
        connector = self._connector_by_guid[connector_guid]
        sentence = "" if outcome == "successful" else (error or DEFAULT_JOB_ERRORS[outcome])
        override = JobOverride(since.timestamp(), outcome, sentence)
        with self._state_lock:
            kept = [
                o for o in self._job_overrides.get(connector.guid, []) if o.since != override.since
            ]
            self._job_overrides[connector.guid] = sorted([*kept, override], key=lambda o: o.since)

    def clear_job_outcomes(self, connector_guid: str | None = None) -> None:
        """Tests: drop the `set_job_outcome` overrides (of one connector, or all)."""
        with self._state_lock:
            if connector_guid is None:
                self._job_overrides.clear()
            else:
                self._job_overrides.pop(connector_guid, None)

    # --- device status ---------------------------------------------------------------------

    def error_code(self, connector: SimConnector) -> str:
        """The device-status error code of a connector ("" for none), by scenario."""
        return ERROR_CODES.get(connector.scenario, "")

    def salesforce_api_limit(self, connector: SimConnector) -> bool:
        """Salesforce connectors that have hit their API request limit (status 7): the
        flapping ones (throttled) and a quarter of the others, unless an error code wins."""
        if connector.type != "sforce" or self.error_code(connector):
            return False
        if connector.scenario == "flapping":
            return True
        return _hash_int(self.config.seed, "sforce-limit", connector.guid) % 4 == 0

    def object_counts(self, connector: SimConnector) -> tuple[int, int]:
        """(objects uploaded, objects total) of the newest run."""
        h = _hash_int(self.config.seed, "objects", connector.guid)
        total = 1000 + h % 50_000
        if self.error_code(connector) or self.salesforce_api_limit(connector):
            return total * (1 + (h >> 20) % 9) // 10, total
        return total, total

    # --- seats -----------------------------------------------------------------------------

    def seat_resources(self, account: SimAccount, now: float) -> list[SeatResource]:
        """The account's seat resources: one `{kind}-seats-total` per connector kind, plus
        `m365-mailboxonedrive-total` with Microsoft 365. About one in five has no limit.
        The resource of a GRACETIMERSTARTED connector is over its limit with the grace
        period running (grace ends 4-18 days after the anchor), that of a QUOTAVIOLATED
        one with the grace period over (1-5 days before the anchor); `set_seat_violation`
        and `clear_seat_violation` override."""
        seed = self.config.seed
        resources: dict[str, SeatResource] = {}
        violating: dict[str, float] = {}
        for connector in self.connectors.get(account.guid, []):
            if connector.type == "system" or connector.created > now:
                continue
            kind = connector.agent_type if connector.type == "dsl" else connector.type
            names = [f"{SEAT_KEYS.get(kind, kind)}-seats-total"]
            if kind == "o365-admin":
                names.insert(0, M365_MAILBOX_SEATS)
            for name in names:
                if name in resources:
                    continue
                h = _hash_int(seed, "seats", account.guid, name)
                usage = 3 + h % 300
                limit = None if (h >> 12) % 5 == 0 else usage + 5 + (h >> 20) % 60
                label = PRODUCT_LABELS.get(kind, kind)
                resources[name] = SeatResource(
                    name=name,
                    group=SEAT_GROUPS.get(kind, kind),
                    readable_name=READABLE_RESOURCES.get(name, f"{label} seats"),
                    usage=usage,
                    limit=limit,
                )
            h = _hash_int(seed, "grace", connector.guid)
            if connector.scenario == "GRACETIMERSTARTED":
                violating[names[0]] = self.anchor + (4 + h % 15) * DAY
            elif connector.scenario == "QUOTAVIOLATED":
                violating[names[0]] = self.anchor - (1 + h % 5) * DAY
        if account.guid not in self._seats_cleared:
            for name, grace in violating.items():
                resource = resources[name]
                limit = resource.limit or resource.usage
                over = 1 + _hash_int(seed, "over", account.guid, name) % 20
                resources[name] = SeatResource(
                    name=name,
                    group=resource.group,
                    readable_name=resource.readable_name,
                    usage=limit + over,
                    limit=limit,
                    grace_expires=grace,
                )
        resources.update(self._seat_overrides.get(account.guid, {}))
        return list(resources.values())

    def set_seat_violation(
        self,
        account_guid: str,
        *,
        resource: str = M365_MAILBOX_SEATS,
        group: str = "o365-admin",
        limit: int = 100,
        usage: int = 112,
        grace_expires: datetime | None = None,
    ) -> None:
        """Tests: this account's `resource` (in seat `group`) has `usage` against `limit`
        (a violation when usage > limit), shown in `/resources` and `/expirations`.
        Without `grace_expires` the violation has no `<grace-expires>`."""
        account = self._by_guid[account_guid]
        readable = READABLE_RESOURCES.get(resource, resource)
        entry = SeatResource(
            name=resource,
            group=group,
            readable_name=readable,
            usage=usage,
            limit=limit,
            grace_expires=None if grace_expires is None else grace_expires.timestamp(),
        )
        with self._state_lock:
            self._seat_overrides.setdefault(account.guid, {})[resource] = entry

    def clear_seat_violation(self, account_guid: str) -> None:
        """Tests: the account is within all its limits (its default violation too)."""
        account = self._by_guid[account_guid]
        with self._state_lock:
            self._seat_overrides.pop(account.guid, None)
            self._seats_cleared.add(account.guid)

    # --- account lifecycle -----------------------------------------------------------------

    def account_deletion(self, account: SimAccount) -> float | None:
        """When the account is due to be deleted, if it is scheduled for deletion: one
        account in DELETION_EVERY from index DELETION_FROM on (deadline 20 days after the
        anchor, plus a few hours), or as `schedule_account_deletion` set."""
        if account.guid in self._deletions:
            return self._deletions[account.guid]
        if account.index >= DELETION_FROM and account.index % DELETION_EVERY == DELETION_EVERY - 1:
            hours = _hash_int(self.config.seed, "deletion", account.guid) % 24
            return self.anchor + 20 * DAY + hours * HOUR
        return None

    def schedule_account_deletion(self, account_guid: str, at: datetime | None) -> None:
        """Tests: schedule the account for deletion at `at`; None cancels (also the default
        schedule)."""
        account = self._by_guid[account_guid]
        with self._state_lock:
            self._deletions[account.guid] = None if at is None else at.timestamp()

    # --- tokens ----------------------------------------------------------------------------

    def _make_tokens(self) -> dict[str, SimToken]:
        seed, config = self.config.seed, self.config
        primary = SimToken(
            guid=make_guid(seed, "token", "primary"),
            aname=config.username,
            descr=self.parent.full_name,
            primary=True,
            created=self.parent.created,
            lifetime=None,
            expires=None,
            acl="MasterAdmin",
        )
        api = SimToken(
            guid=make_guid(seed, "token", "api"),
            aname=config.token_login,
            descr="Vectis monitoring",
            primary=False,
            # P1Y from its creation: it expires `token_expires_in_days` after the anchor.
            created=self.anchor - (365 - config.token_expires_in_days) * DAY,
            lifetime="P1Y",
            expires=None,
            acl="MSPPartner",
        )
        return {primary.aname: primary, api.aname: api}

    def note_login(self, login: str, at: float) -> None:
        """The server saw an authenticated request with this login (token `lastuse`)."""
        with self._state_lock:
            self._last_use[login] = at

    def last_use(self, token: SimToken) -> float:
        """The time of the newest request made with the token, or its creation time."""
        return max(self._last_use.get(token.aname, token.created), token.created)

    def tokens(self, now: float, *, secondary: bool) -> list[SimToken]:
        """The parent user's tokens: the primary one first, then (with `secondary`) the
        API token and two session tokens of the last two days (PT48H, "Session")."""
        primary = [t for t in self._tokens.values() if t.primary]
        if not secondary:
            return primary
        others = [t for t in self._tokens.values() if not t.primary]
        day = int(now // DAY)
        for n, created in enumerate((day * DAY - 15 * HOUR, day * DAY - 2 * HOUR)):
            if created > now:
                continue
            others.append(
                SimToken(
                    guid=make_guid(self.config.seed, "session", day, n),
                    aname="s"
                    + make_guid(self.config.seed, "session-aname", day, n).replace("-", ""),
                    descr="Session",
                    primary=False,
                    created=created,
                    lifetime="PT48H",
                    expires=None,
                    acl="MasterAdmin",
                )
            )
        return primary + others

    def set_token(
        self,
        login: str,
        *,
        expires: datetime | None = None,
        lifetime: str | None = "P1Y",
        created: datetime | None = None,
    ) -> None:
        """Tests: change the token of `login` (the user's primary token or an API token;
        an unknown login gets a new API token): its `expires`, its `lifetime` (None: no
        lifetime, it never expires by age) and, when given, its `created` time."""
        with self._state_lock:
            token = self._tokens.get(login)
            if token is None:
                token = SimToken(
                    guid=make_guid(self.config.seed, "token", login),
                    aname=login,
                    descr="API token",
                    primary=False,
                    created=self.clock.now(),
                    lifetime=None,
                    expires=None,
                    acl="MSPPartner",
                )
                self._tokens[login] = token
            token.expires = None if expires is None else expires.timestamp()
            token.lifetime = lifetime
            if created is not None:
                token.created = created.timestamp()

    # --- audit log -------------------------------------------------------------------------

    def record_own_read(self, *, login: str, acl: str, method: str, path: str, ip: str) -> None:
        """Like Keepit, log an API call made with the parent's credentials in its log."""
        if not self.config.own_read_audit:
            return
        record = {
            "time": iso(self.clock.now()),
            "account": self.parent.guid,
            "company": self.parent.company_name,
            "area": "User events",
            "message": f"API call {method.upper()} {path}",
            "acl": acl,
            "method": method.lower(),
            "allowed": "true",
            "succeeded": "true",
            "client-ip": ip,
            "token": login,
            "device": "",
        }
        with self._own_reads_lock:
            self._own_reads.append(record)

    def log(
        self,
        connector: SimConnector,
        *,
        at: datetime,
        message: str,
        area: str = "Backup/Restore",
        succeeded: bool = False,
    ) -> dict[str, str]:
        """Write one audit record about a connector (tests: a failure at a known time)."""
        account = connector.account
        record = {
            "time": iso(at.timestamp()),
            "account": account.guid,
            "company": account.company_name,
            "area": area,
            "message": message,
            "acl": "StartJob",
            "method": "post",
            "allowed": "true",
            "succeeded": "true" if succeeded else "false",
            "client-ip": "198.51.100.7",
            "token": "scheduler@keepit.example",
            "device": connector.guid,
        }
        with self._own_reads_lock:
            self._logged.append(record)
            self._queries.clear()
        return record

    def _chunk_events(self, day: int, account_index: int) -> list[dict[str, str]]:
        """The generated audit records of one account on one day, time-ordered. The
        latest days' are kept (a client reading a day's slices at once asks for the same
        account-days again and again): generating them was most of an audit page's cost.
        Callers must not change the records."""
        key = (day, account_index)
        with self._chunks_lock:
            cached = self._chunks.get(key)
            if cached is not None:
                self._chunks.move_to_end(key)
                return cached
        events = self._generate_chunk(day, account_index)
        with self._chunks_lock:
            self._chunks[key] = events
            # Two days of every account: the concurrent slices of a day, and the day before.
            while len(self._chunks) > max(4096, 2 * (len(self.accounts) + 1)):
                self._chunks.popitem(last=False)
        return events

    def _generate_chunk(self, day: int, account_index: int) -> list[dict[str, str]]:
        seed = self.config.seed
        account = self.parent if account_index < 0 else self.accounts[account_index]
        count = self.config.events_per_account_per_day
        if account_index < 0:
            count = max(1, count // 5)
        rng = random.Random(_hash_int(seed, "audit", account.guid, day))
        connectors = [c for c in self.connectors.get(account.guid, []) if c.type != "system"]
        events = []
        for k in range(count):
            offset = rng.randrange(DAY)
            area, message, acl, method, failure = AUDIT_TEMPLATES[
                rng.randrange(len(AUDIT_TEMPLATES))
            ]
            failed = bool(failure) and rng.random() < 0.12
            device = ""
            if area in AREAS_WITH_DEVICE and connectors:
                device = connectors[rng.randrange(len(connectors))].guid
            denied = area == "User events" and rng.random() < 0.03
            events.append(
                {
                    "time": iso(day * DAY + offset),
                    "account": account.guid,
                    "company": account.company_name,
                    "area": area,
                    "message": failure if failed else message,
                    "acl": acl,
                    "method": method,
                    "allowed": "false" if denied else "true",
                    "succeeded": "false" if failed or denied else "true",
                    "client-ip": f"198.51.100.{1 + rng.randrange(250)}",
                    "token": f"{FIRST_NAMES[rng.randrange(len(FIRST_NAMES))].lower()}@"
                    f"{account.email.split('@')[1]}",
                    "device": device,
                    "_order": f"{offset:05d}{k:04d}",
                    "_ts": str(day * DAY + offset),
                    "_meta": f"job-{rng.randrange(10**6):06d}" if device else "",
                }
            )
        events.sort(key=lambda e: e["_order"])
        return events

    def _audit_query(self, account: str, start: float, end: float, recursive: bool) -> _AuditQuery:
        key = (account, str(start), str(end), str(recursive))
        cached = self._queries.get(key)
        if cached is not None:
            self._queries.move_to_end(key)
            return cached
        now = self.clock.now()
        oldest = now - self.config.audit_history_days * DAY
        start = max(start, oldest)
        end = min(end, now + 1)
        if account == self.parent.guid and recursive:
            indexes = [-1, *range(len(self.accounts))]
        elif account == self.parent.guid:
            indexes = [-1]
        else:
            indexes = [self._by_guid[account].index]
        chunks: list[tuple[int, int]] = []
        cumulative: list[int] = []
        total = 0
        per_chunk = self.config.events_per_account_per_day
        if end > start:
            for day in range(int(start // DAY), int((end - 1) // DAY) + 1):
                whole_day = day * DAY >= start and (day + 1) * DAY <= end
                for index in indexes:
                    if whole_day:
                        n = per_chunk if index >= 0 else max(1, per_chunk // 5)
                    else:
                        n = sum(
                            1
                            for e in self._chunk_events(day, index)
                            if start <= int(e["_ts"]) < end
                        )
                    if n:
                        chunks.append((day, index))
                        total += n
                        cumulative.append(total)
        with self._own_reads_lock:
            dynamic = [
                r
                for r in self._own_reads
                if (recursive or account == self.parent.guid) and start <= _epoch(r["time"]) < end
            ]
            dynamic += [
                r
                for r in self._logged
                if (r["account"] == account or (recursive and account == self.parent.guid))
                and start <= _epoch(r["time"]) < end
            ]
        query = _AuditQuery(start, end, chunks, cumulative, dynamic, total)
        self._queries[key] = query
        while len(self._queries) > 16:
            self._queries.popitem(last=False)
        return query

    def audit_page(
        self, account: str, start: float, end: float, recursive: bool, offset: int, limit: int
    ) -> tuple[list[dict[str, str]], int]:
        """One page of the audit log and the total number of records in the window."""
        query = self._audit_query(account, start, end, recursive)
        total = query.total_generated + len(query.dynamic)
        page: list[dict[str, str]] = []
        position = offset
        while len(page) < limit and position < query.total_generated:
            chunk_index = bisect.bisect_right(query.cumulative, position)
            chunk_start = query.cumulative[chunk_index - 1] if chunk_index else 0
            day, index = query.chunks[chunk_index]
            events = [
                e
                for e in self._chunk_events(day, index)
                if query.start <= int(e["_ts"]) < query.end
            ]
            take = events[position - chunk_start : position - chunk_start + (limit - len(page))]
            page.extend(take)
            position += len(take)
            if not take:
                break
        if len(page) < limit and position >= query.total_generated:
            dynamic_start = position - query.total_generated
            page.extend(query.dynamic[dynamic_start : dynamic_start + (limit - len(page))])
        return page, total


def _epoch(value: str) -> float:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
