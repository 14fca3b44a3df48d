"""Typed results of Keepit calls, parsed from XML at the client boundary.

Parsing follows the tolerance rules of keepit-api.md Part A: an element may appear once
or many times; optional elements may be missing; text is trimmed; timestamps come with
or without fractional seconds; unknown connector types and audit areas are kept raw.
XML that could carry a DTD is parsed with defusedxml (no entity expansion, no external
entities); see `parse_xml`.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from xml.etree.ElementTree import Element
from xml.etree.ElementTree import fromstring as _fast_fromstring

import isodate
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring
from lxml import etree as lxml_etree

from .errors import KeepitProtocolError

# Connector types Keepit reports but that are not backup connectors.
SKIPPED_CONNECTOR_TYPES = frozenset({"system"})


def _plain(body: bytes) -> bool:
    """True for a document that cannot declare anything: ASCII-compatible bytes (no NUL in
    its first bytes, as UTF-16 or UTF-32 would have) with no markup declaration at all
    (no `<!`: no DOCTYPE, so no entity, internal or external, can exist). Keepit's
    answers are all like this."""
    return b"\x00" not in body[:4] and b"<!" not in body


def parse_xml(body: bytes, *, path: str, expected_root: str | tuple[str, ...]) -> Element:
    """Parse a Keepit answer safely and check its root element.

    A document with any markup declaration goes through defusedxml, which refuses DTDs
    (entity bombs, external entities). A plain one (`_plain`: nothing to defuse) goes
    through the standard library's C parser: defusedxml's own parser is written in
    Python, and on audit pages of hundreds of records it was a quarter of a sync's CPU.
    """
    try:
        root: Element = (
            # S314: only a document without any declaration reaches the C parser (_plain).
            _fast_fromstring(body)  # noqa: S314
            if _plain(body)
            else fromstring(body, forbid_dtd=True)
        )
    except DefusedXmlException as exc:
        raise KeepitProtocolError(
            f"Keepit sent forbidden XML constructs ({type(exc).__name__}) for {path}", path=path
        ) from exc
    except (ParseError, ValueError) as exc:
        raise KeepitProtocolError(f"Keepit sent malformed XML for {path}", path=path) from exc
    _check_root(root.tag, path=path, expected_root=expected_root)
    return root


def _check_root(tag: str, *, path: str, expected_root: str | tuple[str, ...]) -> None:
    roots = (expected_root,) if isinstance(expected_root, str) else expected_root
    if tag not in roots:
        raise KeepitProtocolError(
            f"Keepit answered {path} with <{tag}>, expected <{roots[0]}>", path=path
        )


_audit_parsers = threading.local()  # an lxml parser serves one thread at a time


def _audit_parser() -> lxml_etree.XMLParser:
    parser: lxml_etree.XMLParser | None = getattr(_audit_parsers, "parser", None)
    if parser is None:
        # Nothing is fetched or expanded, and processing instructions are dropped (as the
        # standard library's parser does): only plain documents come here anyway.
        parser = _audit_parsers.parser = lxml_etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
            remove_pis=True,
            remove_comments=True,
        )
    return parser


def parse_audit_records(body: bytes, *, path: str, limit: int) -> list[AuditRecord]:
    """The records of one audit page (`<audit>` of `<record>`s), refused whole when it
    holds more than `limit` (the paging contract).

    A plain page (see `_plain`) is parsed by lxml: it parses without holding the
    interpreter lock and keeps its tree in C, so a page of hundreds of records neither
    stops the process's other threads (the readers waiting on Keepit, the thread storing
    the previous batch) nor leaves thousands of Python objects for the garbage collector.
    The standard library's parser, on the same pages, made the process reading the audit
    log use 45 s of CPU instead of 31 s in the benchmark's initial sync. Any other
    document goes through `parse_xml` (defusedxml)."""
    if _plain(body):
        try:
            root = lxml_etree.fromstring(body, _audit_parser())
        except (lxml_etree.XMLSyntaxError, ValueError) as exc:
            raise KeepitProtocolError(f"Keepit sent malformed XML for {path}", path=path) from exc
        if root.getroottree().docinfo.internalDTD is not None:
            # A declaration `_plain` could not see: written in an encoding the document
            # declares (UTF-7, EBCDIC), which libxml2 honours and expat refuses.
            raise KeepitProtocolError(
                f"Keepit sent forbidden XML constructs (a DTD) for {path}", path=path
            )
        _check_root(root.tag, path=path, expected_root="audit")
        elements: list[Element] | list[lxml_etree._Element] = root.findall("record")
    else:
        elements = parse_xml(body, path=path, expected_root="audit").findall("record")
    if len(elements) > limit:
        # Nothing of a page that breaks the paging contract is used.
        raise KeepitProtocolError(
            f"Keepit sent {len(elements)} audit records for a page of {limit}", path=path
        )
    return [AuditRecord.from_xml(element) for element in elements]


def text(element: Element | lxml_etree._Element, name: str) -> str:
    """The trimmed text of the first child `name`, or "" when it is missing or empty."""
    child = element.find(name)
    if child is None or child.text is None:
        return ""
    return child.text.strip()


def parse_time(value: str) -> datetime | None:
    """ISO 8601 UTC with or without fractional seconds; "" or garbage -> None."""
    value = value.strip()
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_bool(value: str) -> bool | None:
    lowered = value.strip().lower()
    if lowered in {"true", "1", "yes"}:
        return True
    if lowered in {"false", "0", "no"}:
        return False
    return None


def parse_int(value: str) -> int | None:
    """Whole numbers as Keepit sends them: text, possibly with whitespace or as a decimal
    ("3", " 3 ", "3.0"); anything else -> None."""
    value = value.strip()
    try:
        return int(value)
    except ValueError:
        pass
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def format_time(moment: datetime) -> str:
    """The timestamp form Keepit uses: second precision, UTC, `Z`."""
    utc = moment.astimezone(UTC)
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T"
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}Z"
    )


@dataclass(frozen=True)
class ParentAccount:
    """`GET /users/{guid}`: the configured (parent) account."""

    id: str
    enabled: bool | None
    created: datetime | None
    parent: str

    @classmethod
    def from_xml(cls, element: Element, *, requested_id: str) -> ParentAccount:
        return cls(
            id=text(element, "id") or requested_id,
            enabled=parse_bool(text(element, "enabled")),
            created=parse_time(text(element, "created")),
            parent=text(element, "parent"),
        )


@dataclass(frozen=True)
class ChildAccount:
    """One entry of `GET /users/{parent}/users`: a customer account. Read in the v3 shape
    (a nested `<contact>`, `deletion-deadline` for accounts scheduled for deletion) and,
    as a fallback, the flat v1 fields (`company_name`, `full_name`, `email`)."""

    id: str
    created: datetime | None
    parent_id: str
    email: str
    full_name: str
    company_name: str
    deletion_deadline: datetime | None = None

    @property
    def display_name(self) -> str:
        """Company name, falling back to the contact's name, e-mail, then the GUID."""
        return self.company_name or self.full_name or self.email or self.id

    @classmethod
    def from_xml(cls, element: Element) -> ChildAccount:
        contact = element.find("contact")

        def field_(v3: str, v1: str) -> str:
            nested = text(contact, v3) if contact is not None else ""
            return nested or text(element, v1) or text(element, v3)

        return cls(
            id=text(element, "id"),
            created=parse_time(text(element, "created")),
            parent_id=text(element, "parent_id"),
            email=field_("email", "email"),
            full_name=field_("fullname", "full_name"),
            company_name=field_("companyname", "company_name"),
            deletion_deadline=parse_time(text(element, "deletion-deadline")),
        )


@dataclass(frozen=True)
class Connector:
    """One `<cloud>` of `GET /users/{account}/devices` (v4)."""

    guid: str
    name: str
    type: str
    agent_type: str
    created: datetime | None
    accessible: bool
    deletion_deadline: datetime | None

    @property
    def vendor_type(self) -> str:
        """The raw kind: `type`, or `dsl/<agent-type>` for the generic-framework connectors."""
        if self.type == "dsl" and self.agent_type:
            return f"dsl/{self.agent_type}"
        return self.type

    @classmethod
    def from_xml(cls, element: Element) -> Connector:
        accessible = parse_bool(text(element, "accessible"))
        return cls(
            # Keepit's own module lower-cases connector GUIDs; compare them that way.
            guid=text(element, "guid").lower(),
            name=text(element, "name"),
            type=text(element, "type").lower(),
            agent_type=text(element, "agent-type").lower(),
            created=parse_time(text(element, "created")),
            accessible=accessible is not False,
            deletion_deadline=parse_time(text(element, "deletion-deadline")),
        )


@dataclass(frozen=True)
class BackupSummary:
    """One `<device>` of `GET /users/{account}/monitoring/backup/summary`."""

    guid: str
    last_snapshot_time: datetime | None
    last_complete_snapshot_time: datetime | None
    last_snapshot_size: int | None
    size_change: int | None

    @classmethod
    def from_xml(cls, element: Element) -> BackupSummary:
        return cls(
            guid=text(element, "guid").lower(),
            last_snapshot_time=parse_time(text(element, "last-snapshot-time")),
            last_complete_snapshot_time=parse_time(text(element, "last-complete-snapshot-time")),
            last_snapshot_size=parse_int(text(element, "last-snapshot-size")),
            size_change=parse_int(text(element, "size-change")),
        )


@dataclass(frozen=True)
class ConnectorHealth:
    """`GET /users/{account}/devices/{guid}/health?reason=true`."""

    health: str  # healthy / unhealthy / critical, or whatever else Keepit said, lower-cased
    reason: str  # e.g. BADTOKEN; "" when absent

    @classmethod
    def from_xml(cls, element: Element) -> ConnectorHealth:
        return cls(health=text(element, "health").lower(), reason=text(element, "reason").upper())


@dataclass(frozen=True)
class AuditRecord:
    """One `<record>` of the audit log. Keepit gives no id; see `dedup_key`."""

    time: datetime | None
    account: str
    company: str
    area: str
    message: str
    acl: str
    method: str
    allowed: bool | None
    succeeded: bool | None
    client_ip: str
    token: str
    device: str
    metadata: dict[str, str] = field(default_factory=dict)
    raw_time: str = ""

    @property
    def dedup_key(self) -> str:
        """A deterministic hash over the identifying fields, trimmed (keepit-api.md)."""
        parts = (
            self.raw_time,
            self.account,
            self.token,
            self.acl,
            self.method,
            self.message,
            self.client_ip,
            self.device,
        )
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()

    @classmethod
    def from_xml(cls, element: Element | lxml_etree._Element) -> AuditRecord:
        # One pass over the children (the first of a repeated element counts, as with
        # `text()`): an audit page holds hundreds of records, and thirteen `find`s each
        # were a good part of reading one.
        values: dict[str, str] = {}
        meta: Element | lxml_etree._Element | None = None
        for child in element:
            if child.tag == "metadata":
                meta = meta if meta is not None else child
            elif child.tag not in values:
                values[child.tag] = (child.text or "").strip()
        metadata: dict[str, str] = {}
        if meta is not None:
            for parameter in meta.findall("parameter"):
                key = text(parameter, "key")
                if key:
                    metadata[key] = text(parameter, "value")
        get = values.get
        time_text = get("time", "")
        parsed = parse_time(time_text)
        return cls(
            time=parsed,
            # Normalise the time text for the dedup key so "…:00Z" and "…:00.000Z" agree.
            raw_time=format_time(parsed) if parsed else time_text,
            account=get("account", ""),
            company=get("company", ""),
            area=get("area", ""),
            message=get("message", ""),
            acl=get("acl", ""),
            method=get("method", "").lower(),
            allowed=parse_bool(get("allowed", "")),
            succeeded=parse_bool(get("succeeded", "")),
            client_ip=get("client-ip", ""),
            token=get("token", ""),
            device=get("device", "").lower(),
            metadata=metadata,
        )


# --- keepit-api.md Part C: job data, device status, seats, tokens ----------------------------


def _count(element: Element, name: str) -> int:
    """A job count: text, maybe padded or decimal; missing or garbage counts as 0."""
    value = parse_int(text(element, name))
    return max(0, value) if value is not None else 0


def health_by_connector(root: Element) -> dict[str, ConnectorHealth]:
    """`GET /users/{account}/devices/health?reason=true` (C1): `<devhealth>` with one
    `<device>` (guid, health, optional reason) per connector, keyed by lower-cased GUID."""
    found: dict[str, ConnectorHealth] = {}
    for device in root.findall("device"):
        guid = text(device, "guid").lower()
        if guid:
            found[guid] = ConnectorHealth.from_xml(device)
    return found


@dataclass(frozen=True)
class JobCounts:
    """One `<job-type>` of `…/jobs/count` (C2): how many jobs of one type are in each
    state inside the window. Keepit names no order and may leave types out."""

    name: str
    scheduled: int = 0
    in_progress: int = 0
    cancelled: int = 0
    successful: int = 0
    incomplete: int = 0
    unsuccessful: int = 0

    @property
    def finished(self) -> int:
        """Jobs that ended with an outcome a success rate counts (cancelled ones apart)."""
        return self.successful + self.incomplete + self.unsuccessful

    @classmethod
    def from_xml(cls, element: Element) -> JobCounts:
        return cls(
            name=text(element, "name").lower(),
            scheduled=_count(element, "scheduled"),
            in_progress=_count(element, "in-progress"),
            cancelled=_count(element, "cancelled"),
            successful=_count(element, "successful"),
            incomplete=_count(element, "incomplete"),
            unsuccessful=_count(element, "unsuccessful"),
        )

    def __add__(self, other: JobCounts) -> JobCounts:
        return JobCounts(
            name=self.name or other.name,
            scheduled=self.scheduled + other.scheduled,
            in_progress=self.in_progress + other.in_progress,
            cancelled=self.cancelled + other.cancelled,
            successful=self.successful + other.successful,
            incomplete=self.incomplete + other.incomplete,
            unsuccessful=self.unsuccessful + other.unsuccessful,
        )


def job_counts_of(parent: Element | None, job_type: str) -> JobCounts:
    """The counts of `job_type` among a `<counts>` (or `<jobs-count>`) element's
    `<job-type>` children; none listed -> all zero. Repeated entries are added up."""
    total = JobCounts(name=job_type)
    if parent is None:
        return total
    for entry in parent.findall("job-type"):
        counts = JobCounts.from_xml(entry)
        if counts.name == job_type:
            total = total + counts
    return total


def job_counts_by_connector(root: Element, job_type: str = "backup") -> dict[str, JobCounts]:
    """`GET /users/{account}/jobs/count` (C2): one `<device>` (guid, `<counts>`) per
    connector, keyed by lower-cased GUID. Connectors Keepit leaves out had no job."""
    found: dict[str, JobCounts] = {}
    for device in root.findall("device"):
        guid = text(device, "guid").lower()
        if guid:
            counts = job_counts_of(device.find("counts"), job_type)
            found[guid] = found[guid] + counts if guid in found else counts
    return found


# The elements of a job's execution summary that carry its error, most telling first.
SUMMARY_ERROR_ELEMENTS = ("error", "exit-reason", "reason", "message")
MAX_ERROR_CHARS = 500


def _summary_error(value: str) -> str:
    """The error sentence(s) in a job's `execsummary`: escaped XML holding `<summary>`
    (whose element names Keepit does not document), or plain text."""
    value = value.strip()
    if not value:
        return ""
    if value.startswith("<"):
        try:
            root: Element = fromstring(value.encode(), forbid_dtd=True)
        except (DefusedXmlException, ParseError, ValueError):
            return ""
        # The first kind of element that says anything: the errors themselves, else the
        # exit reason ("completed with errors" adds nothing to the errors it sums up).
        for name in SUMMARY_ERROR_ELEMENTS:
            sentences: list[str] = []
            for element in root.iter(name):
                found = " ".join("".join(element.itertext()).split())
                if found and found not in sentences:
                    sentences.append(found)
            if sentences:
                return "; ".join(sentences)
        return ""
    return " ".join(value.split())


@dataclass(frozen=True)
class Job:
    """One `<job>` of the job history (C3; Part B §4.9). Keepit gives no state element:
    it follows from which timestamp is set (succeeded, failed, cancelled), then `active`."""

    guid: str
    types: tuple[str, ...]
    description: str
    active: bool
    start: datetime | None
    succeeded: datetime | None
    failed: datetime | None
    cancelled: datetime | None
    comment: str
    stats: dict[str, str]
    summary_error: str

    @property
    def state(self) -> str:
        if self.succeeded is not None:
            return "succeeded"
        if self.failed is not None:
            return "failed"
        if self.cancelled is not None:
            return "cancelled"
        return "active" if self.active else "pending"

    @property
    def ended(self) -> datetime | None:
        return self.succeeded or self.failed or self.cancelled

    @property
    def is_backup(self) -> bool:
        """A backup job: its type says so, or (no type) its description's first tag."""
        if self.types:
            return "backup" in self.types
        return self.description.lower().startswith("[backup]")

    @property
    def problem(self) -> str:
        """An error Keepit reported for the job: the execution summary's, else the
        `fail_reason` statistic ("" for a clean job). A comment alone is not one: Keepit
        writes comments on jobs that went fine too."""
        found = self.summary_error or self.stats.get("fail_reason", "")
        return found[:MAX_ERROR_CHARS]

    @property
    def error(self) -> str:
        """What went wrong, in Keepit's words: the problem, else the comment."""
        return (self.problem or self.comment)[:MAX_ERROR_CHARS]

    @classmethod
    def from_xml(cls, element: Element) -> Job:
        stats: dict[str, str] = {}
        holder = element.find("stats")
        if holder is not None:
            for stat in holder.findall("stat"):
                name = text(stat, "name")
                if name:
                    stats[name] = " ".join(text(stat, "value").split())
        types = [t.text.strip().lower() for t in element.findall("type") if t.text]
        nested = element.find("types")
        if nested is not None:
            types += [t.text.strip().lower() for t in nested.findall("type") if t.text]
        return cls(
            guid=text(element, "guid"),
            types=tuple(t for t in types if t),
            description=text(element, "description"),
            active=parse_bool(text(element, "active")) is True,
            start=parse_time(text(element, "started")) or parse_time(text(element, "start")),
            succeeded=parse_time(text(element, "succeeded")),
            failed=parse_time(text(element, "failed")),
            cancelled=parse_time(text(element, "cancelled")),
            comment=" ".join(text(element, "comment").split()),
            stats=stats,
            summary_error=_summary_error(text(element, "execsummary")),
        )


@dataclass(frozen=True)
class DeviceStatus:
    """`GET /users/{account}/devices/{guid}/status` (C4), read by Keepit's own rule: the
    current status is the last `<entry>`, the error code the first entry's
    `adata/ecode` (its own `ecode` when that is missing); no entry -> status 0."""

    status: str
    error_code: str

    @classmethod
    def from_xml(cls, root: Element) -> DeviceStatus:
        entries = root.findall("entry")
        if not entries:
            return cls(status="0", error_code="")
        first = entries[0]
        adata = first.find("adata")
        code = (text(adata, "ecode") if adata is not None else "") or text(first, "ecode")
        return cls(status=text(entries[-1], "status") or "0", error_code=code.upper())


@dataclass(frozen=True)
class SeatResource:
    """One `<resource>` of `GET /users/{account}/resources` (C7.2): usage against the
    product's limit (none: unlimited)."""

    name: str
    usage: int
    limit: int | None
    violated: bool
    evaluated: datetime | None

    @classmethod
    def from_xml(cls, element: Element) -> SeatResource:
        return cls(
            name=text(element, "name"),
            usage=parse_int(text(element, "usage")) or 0,
            limit=parse_int(text(element, "limit")),
            violated=parse_bool(text(element, "violated")) is True,
            evaluated=parse_time(text(element, "evaluated")),
        )


@dataclass(frozen=True)
class SeatViolation:
    """One violated resource of one account, from `PUT /users/{partner}/expirations`
    (C7.1): limit, usage and when the grace period ends."""

    account: str
    group: str
    resource: str
    readable_name: str
    limit: int | None
    usage: int
    grace_expires: datetime | None


def seat_violations(root: Element) -> list[SeatViolation]:
    """`<subaccounts>` → `<account>` → `<resources-violation>` → `<resource-group>` →
    `<resources>` → `<resource>`, each level once or many times."""
    found: list[SeatViolation] = []
    for account in root.findall("account"):
        guid = text(account, "guid")
        if not guid:
            continue
        for violation in account.findall("resources-violation"):
            for group in violation.findall("resource-group"):
                group_name = text(group, "name")
                for resources in group.findall("resources"):
                    for resource in resources.findall("resource"):
                        name = text(resource, "name")
                        if not name:
                            continue
                        found.append(
                            SeatViolation(
                                account=guid,
                                group=group_name,
                                resource=name,
                                readable_name=text(resource, "readable-name"),
                                limit=parse_int(text(resource, "limit")),
                                usage=parse_int(text(resource, "usage")) or 0,
                                grace_expires=parse_time(text(resource, "grace-expires")),
                            )
                        )
    return found


@dataclass(frozen=True)
class ApiToken:
    """One `<token>` of `GET /users/{account}/tokens?secondary=1` (C8)."""

    guid: str
    aname: str
    description: str
    primary: bool
    created: datetime | None
    last_used: datetime | None
    lifetime: str
    expires: datetime | None

    @property
    def expires_at(self) -> datetime | None:
        """`expires` when Keepit gives it, else `created` + `lifetime` (Keepit's own
        summary's rule); no lifetime means it never expires."""
        if self.expires is not None:
            return self.expires
        if self.created is None or not self.lifetime:
            return None
        try:
            period = isodate.parse_duration(self.lifetime)
        except (isodate.ISO8601Error, ValueError):
            return None
        try:
            moment: datetime = self.created + period
        except (OverflowError, ValueError):
            return None
        return moment

    @classmethod
    def from_xml(cls, element: Element) -> ApiToken:
        return cls(
            guid=text(element, "guid"),
            aname=text(element, "aname"),
            description=text(element, "descr"),
            primary=parse_bool(text(element, "primary")) is True,
            created=parse_time(text(element, "created")),
            last_used=parse_time(text(element, "lastuse")),
            lifetime=text(element, "lifetime"),
            expires=parse_time(text(element, "expires")),
        )
