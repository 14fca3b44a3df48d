"""The simulated MSP behind the Keepit sandbox: accounts, connectors, backups, audit log.

Everything is a pure function of the seed, the sizes and the sandbox clock, so the same
flags give the same data, and time moving on gives new backups, new audit records and
changing health. Nothing is precomputed per event: a day of one account's audit log is
generated on demand from a hash of (seed, account, day), which keeps a 2,000-account,
14-day log (700,000 records) cheap to page through.
"""

from __future__ import annotations

import bisect
import hashlib
import random
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

DAY = 86400
HOUR = 3600
# A reason code that is not in Keepit's published list (Keepit may add codes any time).
UNKNOWN_REASON = "NEWFANGLEDREASON"

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

    # --- backups and health ----------------------------------------------------------------

    def backup_state(self, connector: SimConnector, now: float) -> BackupState:
        """Snapshots and health of one connector at `now`, by Keepit's own rule: no
        successful backup for 24 h is unhealthy, 48 h critical; lost login is critical."""
        last_slot: float | None = None
        horizon = now if connector.stopped_at is None else min(now, connector.stopped_at)
        first_possible = connector.created + HOUR
        if connector.scenario == "onboarding":
            # The first full backup of a new connector takes two days.
            first_possible = connector.created + 48 * HOUR
        if horizon >= first_possible:
            slots = (horizon - connector.phase) // connector.cadence
            last_slot = connector.phase + slots * connector.cadence
            if last_slot < first_possible:
                last_slot = None
        skip_period = False
        if connector.scenario == "flapping":
            period = int(now // (3 * HOUR))
            skip_period = _hash_int(self.config.seed, "flap", connector.guid, period) % 10 < 3
        last_snapshot = last_complete = last_slot
        if last_slot is not None and connector.scenario in {"partial", "QUOTAVIOLATED"}:
            # The newest snapshot is partial; the last complete one is older.
            back = 1 + _hash_int(self.config.seed, "partial", connector.guid) % 3
            last_complete = last_slot - back * connector.cadence * 4
        if last_slot is not None and skip_period:
            last_complete = last_snapshot = last_slot - connector.cadence
        if connector.scenario == "onboarding" and last_slot is None:
            # Onboarding: a partial first snapshot may exist, no complete one.
            partial_at = connector.created + 6 * HOUR
            last_snapshot = partial_at if now >= partial_at else None
            last_complete = None
        age = now - last_complete if last_complete is not None else None
        health, reason = "healthy", ""
        if connector.scenario in {"BADTOKEN", "BADLOGIN", "NONADMINLOGIN"}:
            health, reason = "critical", connector.scenario
        elif connector.scenario in {"QUOTAVIOLATED", "INCOMPLETECONFIG_O365_ADMIN"}:
            health, reason = "unhealthy", connector.scenario
        elif connector.scenario == "GRACETIMERSTARTED":
            health, reason = "unhealthy", "GRACETIMERSTARTED"
        elif connector.scenario == UNKNOWN_REASON:
            health, reason = "healthy", UNKNOWN_REASON
        elif connector.scenario == "GENERIC":
            health, reason = "unhealthy", "GENERIC"
        elif age is not None and age > 48 * HOUR:
            health, reason = "critical", "CLOUDNOCHECKIN"
        elif age is not None and age > 24 * HOUR:
            health, reason = "unhealthy", "NOCHECKIN"
        elif skip_period:
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
        """The generated audit records of one account on one day, time-ordered."""
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
