"""How Keepit's vocabulary maps onto Vectis's vendor-neutral one (keepit-api.md Part A).

Pure functions: connector kind, audit category, backup status.
"""

from __future__ import annotations

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

# Health reason codes that mean a failure someone must fix (not just a late backup).
FAILURE_REASONS = frozenset({"BADLOGIN", "NONADMINLOGIN", "BADTOKEN", "QUOTAVIOLATED", "CONFIG"})

HEALTH_STATUS: dict[str, str] = {
    "healthy": BackupStatus.OK,
    "unhealthy": BackupStatus.WARNING,
    "critical": BackupStatus.FAILED,
}

REASON_TEXT: dict[str, str] = {
    "OK": "Backing up normally",
    "GENERIC": "Keepit reported a general error",
    "NOCHECKIN": "No backup in the last 24 hours",
    "CLOUDNOCHECKIN": "No backup in the last 48 hours",
    "BADLOGIN": "Keepit lost access: the login was rejected",
    "NONADMINLOGIN": "Keepit lost access: the login is not an administrator",
    "BADTOKEN": "Keepit lost access: the authorization expired or was revoked",
    "QUOTAVIOLATED": "Licence quota exceeded",
    "CONFIG": "The connector's configuration is incomplete",
}


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
    that needs fixing (a connector that can never finish onboarding has failed).
    """
    onboarding = summary is None or summary.last_complete_snapshot_time is None
    if health is None:
        return BackupStatus.ONBOARDING if onboarding else BackupStatus.UNKNOWN
    if onboarding:
        if health.health == "critical" and health.reason in FAILURE_REASONS:
            return BackupStatus.FAILED
        return BackupStatus.ONBOARDING
    return HEALTH_STATUS.get(health.health, BackupStatus.UNKNOWN)


def reason_text(reason: str) -> str:
    """The Keepit reason code in words (unknown codes as they are)."""
    return REASON_TEXT.get(reason.upper(), reason) if reason else ""
