"""What to do about a connector Keepit reports a problem with: its device-status error
code (keepit-api.md C4) and health reason (C5) in Keepit's words, with the help article
Keepit's own client links to.

Keepit's client takes the explanation a user acts on from the status error code, not
from the health reason (C5), so the code wins; a reason alone still gets the article of
its error-code counterpart (C5's "cf." column) where that counterpart has one. Codes
without an article get Keepit's support form, as Keepit's client does; an unknown code
gets Keepit's generic sentence and the support form, with the raw code kept.
"""

from __future__ import annotations

from dataclasses import dataclass

SUPPORT_FORM = "https://help.keepit.com/support/tickets/new"
HELP = "https://www.keepit.com/help"
REAUTHENTICATE_M365 = (
    f"{HELP}/microsoft-365-category/my-microsoft-365-connectors-authentication-is-no-longer-valid/"
)
REAUTHENTICATE = (
    f"{HELP}/platform-category/reauthenticate-a-connector-when-authentication-is-no-longer-valid/"
)
MISSING_LICENCES = f"{HELP}/microsoft-365-category/tenant-missing-microsoft-365-licenses/"
APP_REGISTRATION = f"{HELP}/microsoft-365-category/create-an-app-registration-in-entra-id/"
SALESFORCE_API_LIMIT = f"{HELP}/salesforce-category/your-salesforce-api-requests-usage/"
INCOMPLETE_CONFIG: dict[str, tuple[str, str]] = {
    # connector type -> (what is missing, article)
    "azure-ad": (
        "Entra ID groups and/or administrative units",
        f"{HELP}/entra-id-category/entra-id-objects-are-missing-from-my-backup-configuration/",
    ),
    "azure-do": (
        "Azure DevOps organizations",
        f"{HELP}/azure-devops-category/azure-devops-organizations-are-missing-from-my-backup-"
        "configuration/",
    ),
    "gsuite": (
        "Google Workspace groups and/or organizational units",
        f"{HELP}/google-workspace-category/google-workspace-objects-are-missing-from-my-backup-"
        "configuration/",
    ),
    "o365-admin": (
        "Entra ID groups",
        f"{HELP}/microsoft-365-category/entra-id-groups-are-missing-from-my-backup-configuration/",
    ),
}
GENERIC = "The backup could not start; contact Keepit Support"
# The made-up code Keepit's client uses for Salesforce with status 7.
SFORCE_API_LIMIT = "SFORCE_API_LIMIT"


@dataclass(frozen=True)
class Fix:
    """What Keepit says is wrong and where it explains the fix."""

    code: str
    sentence: str
    url: str
    # "status": from the device status's error code; "reason": from the health reason.
    source: str = "status"

    @property
    def label(self) -> str:
        return "Contact Keepit Support" if self.url == SUPPORT_FORM else "How to fix"


_CODES: dict[str, str] = {
    "E_START": "The backup could not start because of an unexpected problem; contact Keepit "
    "Support",
    "E_LOGIN": "The backup stopped: the connector's authentication to the SaaS application is "
    "no longer valid; reauthenticate the connector",
    "E_REVOKED": "The backup stopped: the connector's authentication to the SaaS application "
    "was revoked; reauthenticate the connector",
    "E_TERM": "The connector's backup job was aborted",
    "E_INITIAL_CONFIGURATION_PENDING": "No backup is scheduled: configure the connector and "
    "start the backup",
    "E_QUOTA": "The backup stopped because a seat limit is exceeded; change the backup "
    "configuration or add seats",
    "E_EMPTY_ROOT": "The backup could not start: no organization was found; check that the "
    "signed-in admin account has a licence and access to the data",
    "E_LOGIN_ADMIN": "Authentication failed; sign in with a global admin account that has the "
    "right permissions",
    "E_WORKLOADS_WITH_MISSING_PLANS_PRESENT_CRITICAL": "Nothing can be backed up: every "
    "selected data area is unlicensed in Microsoft; add the licences and reauthenticate",
    "E_WORKLOADS_WITH_MISSING_PLANS_PRESENT_UNHEALTHY": "Some selected data areas are "
    "unlicensed and are not backed up; add the licences and reauthenticate",
    "E_DEDICATED_APP_IS_NOT_PRESENT_CRITICAL": "The backup is not running: Teams chats is the "
    "only data selected, and it needs an app registration in Entra ID",
    "E_DEDICATED_APP_IS_NOT_PRESENT_UNHEALTHY": "The backup runs, but Teams chats are skipped "
    "until an app registration exists in Entra ID",
    "E_CONFIG": "The connector's configuration is invalid",
    "E_CONNECT": "Keepit cannot connect to the SaaS application",
    "E_READ": "Keepit could not read from the SaaS application",
    "E_WRITE": "Keepit could not write to the SaaS application",
    SFORCE_API_LIMIT: "The backup stopped: the Salesforce API request limit is reached; raise "
    "the share of API requests Keepit may use in the connector configuration (this may cost "
    "performance)",
}
_CODE_LINKS: dict[str, str] = {
    "E_WORKLOADS_WITH_MISSING_PLANS_PRESENT_CRITICAL": MISSING_LICENCES,
    "E_WORKLOADS_WITH_MISSING_PLANS_PRESENT_UNHEALTHY": MISSING_LICENCES,
    "E_DEDICATED_APP_IS_NOT_PRESENT_CRITICAL": APP_REGISTRATION,
    "E_DEDICATED_APP_IS_NOT_PRESENT_UNHEALTHY": APP_REGISTRATION,
    SFORCE_API_LIMIT: SALESFORCE_API_LIMIT,
}
# Health reasons (C5) whose error-code counterpart (C4) has an article.
_REASON_CODES: dict[str, str] = {
    "BADLOGIN": "E_LOGIN",
    "BADTOKEN": "E_REVOKED",
    "NONADMINLOGIN": "E_LOGIN_ADMIN",
    "QUOTAVIOLATED": "E_QUOTA",
    "GRACETIMERSTARTED": "E_QUOTA",
    "GRACETIMEREXPIRED": "E_QUOTA",
    "INITIAL_CONFIGURATION_PENDING": "E_INITIAL_CONFIGURATION_PENDING",
    "EMPTY_ROOT": "E_EMPTY_ROOT",
    "MISSING_PLANS_PRESENT": "E_WORKLOADS_WITH_MISSING_PLANS_PRESENT_UNHEALTHY",
    "MISSING_TEAMS_CHAT_APP_REGISTRATION": "E_DEDICATED_APP_IS_NOT_PRESENT_UNHEALTHY",
}
_REASON_CONFIG_TYPES: dict[str, str] = {
    "INCOMPLETECONFIG_O365_ADMIN": "o365-admin",
    "INCOMPLETECONFIG_AZURE_AD": "azure-ad",
    "INCOMPLETECONFIG_AZURE_DO": "azure-do",
    "INCOMPLETECONFIG_GSUITE": "gsuite",
}


def error_code_fix(code: str, *, connector_type: str, status: str = "") -> Fix | None:
    """Keepit's explanation of a device-status error code for a connector of
    `connector_type`; None when there is nothing to explain. Salesforce with status 7 is
    Keepit's API-limit case whatever the code."""
    code = code.strip().upper()
    if connector_type == "sforce" and status.strip() == "7":
        code = SFORCE_API_LIMIT
    if not code:
        return None
    if code in ("E_LOGIN", "E_REVOKED"):
        url = REAUTHENTICATE_M365 if connector_type == "o365-admin" else REAUTHENTICATE
        return Fix(code, _CODES[code], url)
    if code == "E_INCOMPLETE_CONNECTOR_CONFIG":
        what, url = INCOMPLETE_CONFIG.get(connector_type, (INCOMPLETE_CONFIG["o365-admin"][0], ""))
        sentence = f"{what} are missing from the backup configuration"
        return Fix(code, sentence, url if connector_type in INCOMPLETE_CONFIG else SUPPORT_FORM)
    sentence = _CODES.get(code, GENERIC)
    return Fix(code, sentence, _CODE_LINKS.get(code, SUPPORT_FORM))


def reason_fix(reason: str, *, connector_type: str) -> Fix | None:
    """The article for a health reason, through its error-code counterpart; None when
    the reason has none (late backups, throttling, unknown codes: the reason's own
    sentence says enough)."""
    reason = reason.strip().upper()
    config_type = _REASON_CONFIG_TYPES.get(reason)
    if config_type is not None:
        what, url = INCOMPLETE_CONFIG[config_type]
        return Fix(reason, f"{what} are missing from the backup configuration", url, "reason")
    counterpart = _REASON_CODES.get(reason)
    if counterpart is None:
        return None
    fix = error_code_fix(counterpart, connector_type=connector_type)
    if fix is None or fix.url == SUPPORT_FORM:
        return None
    return Fix(reason, fix.sentence, fix.url, source="reason")
