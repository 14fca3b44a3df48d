"""Keepit's health reason codes are Keepit's (keepit-api.md Part C5), and which audit records are
Vectis's own reads."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from backups.models import BackupStatus
from keepit.mapping import HEALTH_REASONS, backup_status, event_snapshot, health_reason
from keepit.schemas import AuditRecord, BackupSummary, ConnectorHealth

# The vendor's HealthReason type, as Keepit's own client declares it (22 values).
KEEPIT_HEALTH_REASONS = [
    "OK",
    "GENERIC",
    "NOCHECKIN",
    "CLOUDNOCHECKIN",
    "BADLOGIN",
    "NONADMINLOGIN",
    "BADTOKEN",
    "QUOTAVIOLATED",
    "INCOMPLETECONFIG_O365_ADMIN",
    "INCOMPLETECONFIG_AZURE_AD",
    "INCOMPLETECONFIG_AZURE_DO",
    "INCOMPLETECONFIG_GSUITE",
    "INITIAL_CONFIGURATION_PENDING",
    "MISSING_TEAMS_CHAT_APP_REGISTRATION",
    "MISSING_PLANS_PRESENT",
    "BLOCKEDBYEXTERNALQUOTA",
    "GRACETIMERSTARTED",
    "GRACETIMEREXPIRED",
    "SMALLFILESBACKUP",
    "THROTTLINGBACKUP",
    "EMPTY_ROOT",
    "SNAPSHOT_CREATION_CONFLICT",
]
COMPLETE = BackupSummary(
    guid="c",
    last_snapshot_time=datetime(2026, 11, 26, tzinfo=UTC),
    last_complete_snapshot_time=datetime(2026, 11, 26, tzinfo=UTC),
    last_snapshot_size=1,
    size_change=0,
)


def test_the_list_is_exactly_keepits_and_has_no_invented_code() -> None:
    assert sorted(HEALTH_REASONS) == sorted(KEEPIT_HEALTH_REASONS)
    assert "CONFIG" not in HEALTH_REASONS


@pytest.mark.parametrize("code", KEEPIT_HEALTH_REASONS)
def test_every_code_has_a_sentence_and_says_whether_it_needs_action(code: str) -> None:
    reason = health_reason(code)
    assert reason.known
    assert reason.sentence
    assert reason.sentence[0].isupper()
    assert code not in reason.sentence  # words, not the code
    assert isinstance(reason.needs_action, bool)


@pytest.mark.parametrize(
    ("code", "needs_action"),
    [
        ("OK", False),
        ("NOCHECKIN", False),
        ("CLOUDNOCHECKIN", False),
        ("THROTTLINGBACKUP", False),
        ("BADTOKEN", True),
        ("BADLOGIN", True),
        ("QUOTAVIOLATED", True),
        ("INCOMPLETECONFIG_GSUITE", True),
        ("GRACETIMEREXPIRED", True),
    ],
)
def test_what_needs_action(code: str, needs_action: bool) -> None:
    assert health_reason(code).needs_action is needs_action


def test_an_unknown_code_is_shown_raw_and_counted_as_needing_a_look() -> None:
    reason = health_reason(" brandnewreason ")
    assert not reason.known
    assert reason.needs_action
    assert "BRANDNEWREASON" in reason.sentence
    # Healthy with a code nobody knows: unknown, never silently OK.
    assert backup_status(COMPLETE, ConnectorHealth("healthy", "BRANDNEWREASON")) == (
        BackupStatus.UNKNOWN
    )
    assert backup_status(COMPLETE, ConnectorHealth("healthy", "OK")) == BackupStatus.OK
    assert backup_status(COMPLETE, ConnectorHealth("healthy", "")) == BackupStatus.OK


def test_no_code_says_nothing() -> None:
    assert health_reason("") == health_reason("  ")
    assert health_reason("").sentence == ""
    assert not health_reason("").needs_action


# --- Vectis's own reads --------------------------------------------------------------------


def _record(*, token: str, method: str, acl: str) -> AuditRecord:
    return AuditRecord(
        time=datetime(2026, 11, 26, 11, 0, tzinfo=UTC),
        account="acct",
        company="Contoso",
        area="Backup/Restore",
        message="…",
        acl=acl,
        method=method,
        allowed=True,
        succeeded=True,
        client_ip="203.0.113.7",
        token=token,
        device="",
    )


@pytest.mark.parametrize(
    ("token", "method", "acl", "own"),
    [
        ("vectis-api", "get", "GetDevices", True),
        ("vectis-api", "GET", "GetUsers", True),
        ("vectis-api", "put", "AuditFilter", True),
        ("vectis-api", "put", "FilterDeviceJobs", True),
        ("vectis-api", "put", "FilterExpirations", True),
        # The same login doing real work in Keepit (a personal Master Admin login shared
        # with Vectis): a restore, a connector change, a deletion — real events.
        ("vectis-api", "post", "CreateRestoreJob", False),
        ("vectis-api", "put", "UpdateDevice", False),
        ("vectis-api", "delete", "DeleteUser", False),
        # Somebody else reading is not us.
        ("admin@msp.example", "get", "GetDevices", False),
    ],
)
def test_only_reads_signed_with_the_connections_login_are_vectiss_own(
    token: str, method: str, acl: str, own: bool
) -> None:
    event = event_snapshot(_record(token=token, method=method, acl=acl), own_login="vectis-api")
    assert event is not None
    assert event.is_own_read is own
