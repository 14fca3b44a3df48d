"""Typed results of Keepit calls, parsed from XML at the client boundary.

Parsing follows the tolerance rules of keepit-api.md Part A: an element may appear once
or many times; optional elements may be missing; text is trimmed; timestamps come with
or without fractional seconds; unknown connector types and audit areas are kept raw.
The XML is always parsed with defusedxml (no entity expansion, no external entities).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from .errors import KeepitProtocolError

# Connector types Keepit reports but that are not backup connectors.
SKIPPED_CONNECTOR_TYPES = frozenset({"system"})


def parse_xml(body: bytes, *, path: str, expected_root: str | tuple[str, ...]) -> Element:
    """Parse a Keepit answer safely and check its root element."""
    try:
        root: Element = fromstring(body, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise KeepitProtocolError(
            f"Keepit sent forbidden XML constructs ({type(exc).__name__}) for {path}", path=path
        ) from exc
    except (ParseError, ValueError) as exc:
        raise KeepitProtocolError(f"Keepit sent malformed XML for {path}", path=path) from exc
    roots = (expected_root,) if isinstance(expected_root, str) else expected_root
    if root.tag not in roots:
        raise KeepitProtocolError(
            f"Keepit answered {path} with <{root.tag}>, expected <{roots[0]}>", path=path
        )
    return root


def text(element: Element, name: str) -> str:
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
    try:
        return int(value.strip())
    except ValueError:
        return None


def format_time(moment: datetime) -> str:
    """The timestamp form Keepit uses: second precision, UTC, `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
    """One entry of `GET /users/{parent}/users` (v1): a customer account."""

    id: str
    created: datetime | None
    parent_id: str
    email: str
    full_name: str
    company_name: str

    @property
    def display_name(self) -> str:
        """Company name, falling back to the contact's name, e-mail, then the GUID."""
        return self.company_name or self.full_name or self.email or self.id

    @classmethod
    def from_xml(cls, element: Element) -> ChildAccount:
        return cls(
            id=text(element, "id"),
            created=parse_time(text(element, "created")),
            parent_id=text(element, "parent_id"),
            email=text(element, "email"),
            full_name=text(element, "full_name"),
            company_name=text(element, "company_name"),
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
    def from_xml(cls, element: Element) -> AuditRecord:
        metadata: dict[str, str] = {}
        meta = element.find("metadata")
        if meta is not None:
            for parameter in meta.findall("parameter"):
                key = text(parameter, "key")
                if key:
                    metadata[key] = text(parameter, "value")
        time_text = text(element, "time")
        parsed = parse_time(time_text)
        return cls(
            time=parsed,
            # Normalise the time text for the dedup key so "…:00Z" and "…:00.000Z" agree.
            raw_time=format_time(parsed) if parsed else time_text,
            account=text(element, "account"),
            company=text(element, "company"),
            area=text(element, "area"),
            message=text(element, "message"),
            acl=text(element, "acl"),
            method=text(element, "method").lower(),
            allowed=parse_bool(text(element, "allowed")),
            succeeded=parse_bool(text(element, "succeeded")),
            client_ip=text(element, "client-ip"),
            token=text(element, "token"),
            device=text(element, "device").lower(),
            metadata=metadata,
        )
