"""How Keepit's vocabulary maps onto Vectis's vendor-neutral one (keepit-api.md Part A).

Pure functions: connector kind, audit category, backup status.
"""

from __future__ import annotations

from dataclasses import dataclass

from backups.models import AuditCategory, BackupStatus, ConnectorKind

from .schemas import BackupSummary, Connector, ConnectorHealth

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
