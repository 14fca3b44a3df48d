"""How Keepit's vocabulary maps onto Vectis's vendor-neutral one (keepit-api.md Part A
and C5), and Keepit's answers onto the snapshots a provider returns (backups.snapshot).

Pure functions: connector kind, audit category, backup status, reason codes, snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass

from backups.models import AuditCategory, BackupStatus, ConnectorKind
from backups.snapshot import (
    AccountSnapshot,
    AuditEventSnapshot,
    ConnectorSnapshot,
    StatusSnapshot,
)

from .schemas import AuditRecord, BackupSummary, ChildAccount, Connector, ConnectorHealth

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


def audit_category(area: str) -> str:
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


def status_snapshot(summary: BackupSummary | None, health: ConnectorHealth) -> StatusSnapshot:
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
    )


def connector_snapshot(
    connector: Connector, summary: BackupSummary | None, health: ConnectorHealth | None
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
        status=status_snapshot(summary, health) if health is not None else None,
    )


def account_snapshot(
    child: ChildAccount,
    connectors: list[Connector] | None,
    summaries: dict[str, BackupSummary],
    health: dict[str, ConnectorHealth],
    error: str = "",
) -> AccountSnapshot:
    return AccountSnapshot(
        external_id=child.id,
        company_name=child.company_name,
        contact_name=child.full_name,
        email=child.email,
        connectors=None
        if connectors is None
        else tuple(
            connector_snapshot(c, summaries.get(c.guid), health.get(c.guid)) for c in connectors
        ),
        error=error,
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
        # Keepit logs every API call, ours included: its token is our login.
        is_own_read=bool(own_login) and record.token == own_login,
    )
