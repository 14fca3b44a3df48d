"""A second backup vendor, for tests only: it returns a fixed snapshot through the same
runner and ingest as Keepit, which proves a vendor is a provider and nothing more."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from backups.models import AuditCategory, BackupStatus
from backups.snapshot import (
    AccountSnapshot,
    AuditBatch,
    AuditEventSnapshot,
    Collection,
    ConnectorSnapshot,
    StatusSnapshot,
    SyncProgress,
)
from integrations.base import ConnectionTestResult, Provider
from integrations.models import Connection

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def snapshot_accounts() -> list[AccountSnapshot]:
    ok = StatusSnapshot(
        status=BackupStatus.OK, health="good", last_success_at=NOW - timedelta(hours=3)
    )
    broken = StatusSnapshot(
        status=BackupStatus.FAILED,
        health="bad",
        reason="AUTH",
        reason_text="The vault lost its sign-in to the tenant",
        reason_needs_action=True,
        last_success_at=NOW - timedelta(days=2),
    )
    return [
        AccountSnapshot(
            external_id="acme-1",
            company_name="Globex Corporation",
            connectors=(
                ConnectorSnapshot("vault-1", "Globex Mail", "m365", "acme/mail", status=ok),
                ConnectorSnapshot("vault-2", "Globex CRM", "salesforce", "acme/crm", status=broken),
            ),
        ),
        AccountSnapshot(
            external_id="acme-2", company_name="Initech", connectors=None, error="timeout"
        ),
    ]


def audit(sync_state: dict[str, Any]) -> Iterator[AuditBatch]:
    events = [
        AuditEventSnapshot(
            dedup_key=f"acme-event-{n}",
            occurred_at=NOW - timedelta(hours=n),
            account_external_id="acme-1",
            connector_external_id="vault-2",
            category=AuditCategory.RECOVERY,
            area="Restore",
            message=f"Restore {n} finished",
            succeeded=True,
        )
        for n in range(1, 4)
    ]
    yield AuditBatch(events=events[:2], sync_state={"page": 1}, seen=2)
    yield AuditBatch(events=events[2:], sync_state={"page": "done"}, seen=1)


class AcmeProvider(Provider):
    kind = "acme"
    name = "Acme Backup"
    description = "A vendor that exists only in the test suite."
    mark = "A"
    admin_changelist = "admin:integrations_syncrun_changelist"
    admin_add = "admin:integrations_syncrun_changelist"
    admin_change = "admin:integrations_syncrun_change"

    def test_connection(
        self, *, config: dict[str, Any], secrets: dict[str, str]
    ) -> ConnectionTestResult:
        return ConnectionTestResult(ok=True, message="Connected to Acme.")

    def collect(
        self,
        connection: Connection,
        *,
        now: datetime,
        progress: SyncProgress,
        fresh: bool = False,
    ) -> Collection:
        progress.phase = "the Acme vaults"
        return Collection(
            inventory=snapshot_accounts,
            audit=lambda: audit(connection.sync_state),
            requests=lambda: 3,
        )
