"""How Keepit's vocabulary maps onto Vectis's vendor-neutral one (keepit-api.md Part A
and C5), and Keepit's answers onto the snapshots a provider returns (backups.snapshot).

Pure functions: connector kind, audit category, backup status, reason codes, snapshots.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime

from backups.models import AuditCategory, BackupStatus, ConnectorKind
from backups.snapshot import (
    AuditEventSnapshot,
    ConnectorSnapshot,
    JobDaySnapshot,
    SeatSnapshot,
    StatusSnapshot,
)

from .fixes import Fix, error_code_fix, reason_fix
from .schemas import (
    AuditRecord,
    BackupSummary,
    Connector,
    ConnectorHealth,
    SeatResource,
    SeatViolation,
)

CONNECTOR_KINDS: dict[str, str] = {
    "o365-admin": ConnectorKind.M365,
    "azure-ad": ConnectorKind.ENTRA_ID,
    "gsuite": ConnectorKind.GOOGLE_WORKSPACE,
    "sforce": ConnectorKind.SALESFORCE,
    "dynamics365": ConnectorKind.DYNAMICS365,
    "powerbi": ConnectorKind.POWER_BI,
    "zendesk": ConnectorKind.ZENDESK,
    "azure-do": ConnectorKind.AZURE_DEVOPS,
    # `dsl` connectors: the real kind is `agent-type`.
    "okta": ConnectorKind.OKTA,
    "jira": ConnectorKind.JIRA,
    "jsm": ConnectorKind.JIRA_SERVICE_MANAGEMENT,
    "confluence": ConnectorKind.CONFLUENCE,
    "bamboohr": ConnectorKind.BAMBOOHR,
    "docusign": ConnectorKind.DOCUSIGN,
    "miro": ConnectorKind.MIRO,
    "gitlab": ConnectorKind.GITLAB,
    "github": ConnectorKind.GITHUB,
    "monday": ConnectorKind.MONDAY,
    "autodesk-forma": ConnectorKind.AUTODESK_FORMA,
    "sharepoint": ConnectorKind.SHAREPOINT,
    "onedrive": ConnectorKind.ONEDRIVE,
    "teams": ConnectorKind.TEAMS,
    "exchange": ConnectorKind.EXCHANGE,
}

# Keyword rules on the lower-cased `area`, most specific first. Unknown areas -> other.
CATEGORY_KEYWORDS: list[tuple[tuple[str, ...], str]] = [
    (("compliance", "rtbf", "gdpr", "legal hold"), AuditCategory.COMPLIANCE),
    (("security", "sso", "mfa", "siem"), AuditCategory.SECURITY),
    (("report",), AuditCategory.REPORTING),
    (("recovery", "restore", "backup", "download", "browse"), AuditCategory.RECOVERY),
    (("connection",), AuditCategory.CONNECTION),
    (("connector", "device"), AuditCategory.CONNECTOR),
    (("user", "login", "token"), AuditCategory.USER),
    (("account",), AuditCategory.ACCOUNT),
]


HEALTH_STATUS: dict[str, str] = {
    "healthy": BackupStatus.OK,
    "unhealthy": BackupStatus.WARNING,
    "critical": BackupStatus.FAILED,
}


@dataclass(frozen=True)
class HealthReason:
    """A Keepit health reason code in words, and whether an admin must act on it."""

    code: str
    sentence: str
    needs_action: bool
    known: bool = True


# Keepit's HealthReason list (keepit-api.md Part C5, from Keepit's own client), each with
# the sentence an MSP admin reads and whether someone must act (Keepit itself branches
# on health, not on the reason; the "action" column is ours). Late backups (NOCHECKIN,
# CLOUDNOCHECKIN) need no action of their own: the Backup Stale rule covers them.
HEALTH_REASONS: dict[str, HealthReason] = {
    reason.code: reason
    for reason in (
        HealthReason("OK", "Backing up normally", False),
        HealthReason("GENERIC", "Keepit reports a problem with the account", True),
        HealthReason("NOCHECKIN", "The connector did not check in as expected", False),
        HealthReason("CLOUDNOCHECKIN", "The cloud connector did not check in as expected", False),
        HealthReason("BADLOGIN", "Keepit lost access: the login was rejected", True),
        HealthReason(
            "NONADMINLOGIN",
            "Keepit lost access: the login is invalid or has no administrator rights",
            True,
        ),
        HealthReason(
            "BADTOKEN", "Keepit lost access: the authorization expired or was revoked", True
        ),
        HealthReason(
            "QUOTAVIOLATED", "A limit of the Keepit product (seats, storage) is exceeded", True
        ),
        HealthReason(
            "INCOMPLETECONFIG_O365_ADMIN",
            "Entra ID groups are missing from the backup configuration",
            True,
        ),
        HealthReason(
            "INCOMPLETECONFIG_AZURE_AD",
            "Entra ID groups or administrative units are missing from the backup configuration",
            True,
        ),
        HealthReason(
            "INCOMPLETECONFIG_AZURE_DO",
            "Azure DevOps organizations are missing from the backup configuration",
            True,
        ),
        HealthReason(
            "INCOMPLETECONFIG_GSUITE",
            "Google Workspace groups or organizational units are missing from the backup "
            "configuration",
            True,
        ),
        HealthReason(
            "INITIAL_CONFIGURATION_PENDING",
            "No backup is scheduled: the connector was created but never configured",
            True,
        ),
        HealthReason(
            "MISSING_TEAMS_CHAT_APP_REGISTRATION",
            "Teams chats are selected but the Entra ID app registration they need is missing",
            True,
        ),
        HealthReason(
            "MISSING_PLANS_PRESENT",
            "Selected Microsoft data areas are unlicensed and are not backed up",
            True,
        ),
        HealthReason(
            "BLOCKEDBYEXTERNALQUOTA",
            "The backup is blocked by a quota of the SaaS application (e.g. its API limit)",
            True,
        ),
        HealthReason(
            "GRACETIMERSTARTED", "A seat limit is exceeded and the grace period is running", True
        ),
        HealthReason(
            "GRACETIMEREXPIRED", "A seat limit is exceeded and the grace period is over", True
        ),
        HealthReason(
            "SMALLFILESBACKUP", "The backup is slowed down by very many small files", False
        ),
        HealthReason(
            "THROTTLINGBACKUP",
            "The backup is slowed down by throttling in the SaaS application",
            False,
        ),
        HealthReason(
            "EMPTY_ROOT",
            "No organization or data was found: check the admin account's licence and access",
            True,
        ),
        HealthReason(
            "SNAPSHOT_CREATION_CONFLICT",
            "Keepit reports a snapshot creation conflict (meaning not documented)",
            True,
        ),
    )
}


def health_reason(code: str) -> HealthReason:
    """The reason in words. No code: nothing to say. A code Keepit added after this list:
    shown raw and counted as needing a look, never silently as fine."""
    code = code.strip().upper()
    if not code:
        return HealthReason("", "", False)
    known = HEALTH_REASONS.get(code)
    if known is not None:
        return known
    return HealthReason(
        code,
        f"Keepit reason {code} (not known to Vectis: check the connector in Keepit)",
        True,
        known=False,
    )


def connector_kind(connector: Connector) -> str:
    key = connector.agent_type if connector.type == "dsl" else connector.type
    return CONNECTOR_KINDS.get(key, ConnectorKind.OTHER)


@functools.lru_cache(maxsize=1024)
def audit_category(area: str) -> str:
    """The category of a raw area (cached: Keepit uses a handful of area strings)."""
    lowered = area.lower()
    for keywords, category in CATEGORY_KEYWORDS:
        if any(keyword in lowered for keyword in keywords):
            return category
    return AuditCategory.OTHER


def backup_status(summary: BackupSummary | None, health: ConnectorHealth | None) -> str:
    """Status from health and the backup summary.

    healthy -> ok, unhealthy -> warning, critical -> failed; a connector without a
    complete snapshot is onboarding — unless Keepit reports it critical for a reason
    that needs fixing (a connector that can never finish onboarding has failed). A
    healthy connector with a reason code Vectis does not know is unknown: it needs a
    look, and is never counted as OK.
    """
    onboarding = summary is None or summary.last_complete_snapshot_time is None
    if health is None:
        return BackupStatus.ONBOARDING if onboarding else BackupStatus.UNKNOWN
    reason = health_reason(health.reason)
    if onboarding:
        if health.health == "critical" and reason.needs_action:
            return BackupStatus.FAILED
        return BackupStatus.ONBOARDING
    status = HEALTH_STATUS.get(health.health, BackupStatus.UNKNOWN)
    if status == BackupStatus.OK and not reason.known:
        return BackupStatus.UNKNOWN
    return status


# --- snapshots ---------------------------------------------------------------------------------


def connector_fix(
    connector: Connector, health: ConnectorHealth, error_code: str, status: str = ""
) -> Fix | None:
    """What Keepit says to do: from the device-status error code when the connector is
    not healthy (as Keepit's own client does), else from the health reason."""
    if health.health != "healthy":
        fix = error_code_fix(error_code, connector_type=connector.type, status=status)
        if fix is not None:
            return fix
    return reason_fix(health.reason, connector_type=connector.type)


def status_snapshot(
    summary: BackupSummary | None,
    health: ConnectorHealth,
    *,
    fix: Fix | None = None,
    error_checked_at: datetime | None = None,
) -> StatusSnapshot:
    reason = health_reason(health.reason)
    return StatusSnapshot(
        status=backup_status(summary, health),
        health=health.health,
        reason=health.reason,
        reason_text=reason.sentence,
        reason_needs_action=reason.needs_action,
        last_backup_at=summary.last_snapshot_time if summary else None,
        last_success_at=summary.last_complete_snapshot_time if summary else None,
        last_snapshot_size=summary.last_snapshot_size if summary else None,
        # Only a device status's code is an error code; a reason stays in `reason`.
        error_code=fix.code if fix and fix.source == "status" else "",
        fix_text=fix.sentence if fix else "",
        help_url=fix.url if fix else "",
        help_label=fix.label if fix else "",
        error_checked_at=error_checked_at,
    )


def connector_snapshot(
    connector: Connector,
    summary: BackupSummary | None,
    health: ConnectorHealth | None,
    *,
    fix: Fix | None = None,
    error_checked_at: datetime | None = None,
    jobs: tuple[JobDaySnapshot, ...] = (),
) -> ConnectorSnapshot:
    return ConnectorSnapshot(
        external_id=connector.guid,
        name=connector.name,
        kind=connector_kind(connector),
        vendor_type=connector.vendor_type,
        accessible=connector.accessible,
        deletion_scheduled_at=connector.deletion_deadline,
        vendor_created_at=connector.created,
        # Health unreadable: the last known status stays.
        status=status_snapshot(summary, health, fix=fix, error_checked_at=error_checked_at)
        if health is not None
        else None,
        jobs=jobs,
    )


# Readable names of Keepit's seat resources (keepit-api.md C7); others are spelled out.
SEAT_LABELS: dict[str, str] = {
    "o365-admin-seats-total": "Microsoft 365 seats",
    "azuread-seats-total": "Entra ID seats",
    "gsuite-seats-total": "Google Workspace seats",
    "sforce-seats-total": "Salesforce seats",
    "dynamics365-seats-total": "Dynamics 365 seats",
    "powerbi-seats-total": "Power BI seats",
    "zendesk-seats-total": "Zendesk seats",
    "azuredo-seats-total": "Azure DevOps seats",
    "confluence-seats-total": "Confluence seats",
    "jira-seats-total": "Jira seats",
    "bamboohr-seats-total": "BambooHR seats",
    "docusign-seats-total": "Docusign seats",
    "okta-seats-total": "Okta seats",
    "miro-seats-total": "Miro seats",
    "m365-quadseats-total": "Microsoft 365 seats (all workloads)",
    "m365-mailboxonedrive-total": "Microsoft 365 mailbox and OneDrive seats",
    "entraid-users-total": "Entra ID users",
    "gw-quadseats-total": "Google Workspace seats (all workloads)",
    "o365-mailboxes": "Microsoft 365 mailboxes",
    "o365-onedrives": "OneDrive accounts",
    "sharepoint-users": "SharePoint users",
    "gsuite-mailboxes": "Gmail mailboxes",
    "gsuite-gdrives": "Google Drive accounts",
    "zendesk-agents": "Zendesk agents",
}


def seat_label(name: str, readable: str = "") -> str:
    if readable:
        return readable
    known = SEAT_LABELS.get(name)
    if known:
        return known
    words = name.replace("-", " ").replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def is_seat_resource(resource: SeatResource) -> bool:
    """Seats, not other product resources (storage, retention periods, …): Keepit's
    resource names for seats end in -total, -users, -seats, -mailboxes, -agents …"""
    name = resource.name.lower()
    return name in SEAT_LABELS or name.endswith(
        ("-total", "-users", "-seats", "-mailboxes", "-onedrives", "-gdrives", "-agents")
    )


def seat_snapshots(
    resources: list[SeatResource] | None, violations: list[SeatViolation]
) -> tuple[SeatSnapshot, ...] | None:
    """The account's seats with the violations' grace expiry laid over them (None when
    its seat usage was not read this time)."""
    if resources is None:
        return None
    over = {violation.resource: violation for violation in violations}
    seats = []
    for resource in resources:
        if not is_seat_resource(resource):
            continue
        violation = over.pop(resource.name, None)
        seats.append(
            SeatSnapshot(
                resource=resource.name,
                label=seat_label(resource.name, violation.readable_name if violation else ""),
                usage=resource.usage,
                limit=resource.limit,
                violated=resource.violated or violation is not None,
                grace_expires_at=violation.grace_expires if violation else None,
            )
        )
    return (*seats, *violation_snapshots(list(over.values())))


def violation_snapshots(violations: list[SeatViolation]) -> tuple[SeatSnapshot, ...]:
    return tuple(
        SeatSnapshot(
            resource=v.resource,
            label=seat_label(v.resource, v.readable_name),
            usage=v.usage,
            limit=v.limit,
            violated=True,
            grace_expires_at=v.grace_expires,
        )
        for v in violations
    )


def event_snapshot(record: AuditRecord, *, own_login: str) -> AuditEventSnapshot | None:
    """None for a record without a usable time (it cannot be placed on a timeline)."""
    if record.time is None:
        return None
    return AuditEventSnapshot(
        dedup_key=record.dedup_key,
        occurred_at=record.time,
        account_external_id=record.account,
        connector_external_id=record.device,
        category=audit_category(record.area),
        area=record.area,
        message=record.message,
        actor=record.token,
        succeeded=record.succeeded,
        allowed=record.allowed,
        client_ip=record.client_ip,
        operation=record.acl,
        method=record.method,
        metadata=record.metadata,
        is_own_read=is_own_read(record, own_login=own_login),
    )


# Keepit's capability names of the read-only PUTs Vectis sends (keepit-api.md C12: filters,
# ranges, counts and usage reports).
_READ_PUT_ACL = re.compile(r"filter|range|count|usage|history|expiration", re.IGNORECASE)


def is_own_read(record: AuditRecord, *, own_login: str) -> bool:
    """Keepit logs every API call, ours included: a record is one of Vectis's own reads
    when its actor is the connection's login *and* it was a read (a GET, or a PUT of a
    read filter). With a personal login, the same name also signs the admin's own work in
    Keepit (restores, deletions, settings changes): those are real events, never ours."""
    if not own_login or record.token != own_login:
        return False
    method = record.method.strip().lower()
    return method in ("get", "head") or (method == "put" and bool(_READ_PUT_ACL.search(record.acl)))
