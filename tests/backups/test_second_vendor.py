"""A second vendor is a provider and nothing more: the same runner, the same ingest, the
same pages and alerts, with its own name."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from pytest_django.fixtures import Settings

from alerts import services as alert_services
from alerts.models import Alert
from backups.models import AccountLink, BackupAuditEvent, BackupConnector, BackupStatus
from backups.runner import run_sync
from integrations.models import Connection, SyncRun
from tests.backups.second_vendor import NOW
from tests.factories import FailedRuleFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme(settings: Settings) -> Connection:
    settings.VECTIS_PROVIDERS = {
        **settings.VECTIS_PROVIDERS,
        "acme": "tests.backups.second_vendor.AcmeProvider",
    }
    return Connection.objects.create(provider="acme", name="Acme EU", enabled=True)


def test_a_second_vendor_syncs_through_the_same_runner_and_ingest(acme: Connection) -> None:
    run = run_sync(acme, now=NOW)
    assert run.outcome == SyncRun.Outcome.PARTIAL  # Initech's vaults could not be read
    assert run.error == "1 account(s) could not be read: Initech (acme-2): timeout"
    assert run.http_requests == 3
    assert run.counts["accounts_seen"] == 2
    assert run.counts["events_added"] == 3
    link = AccountLink.objects.get(connection=acme, external_id="acme-1")
    assert link.customer is not None
    assert link.customer.name == "Globex Corporation"
    crm = BackupConnector.objects.get(connection=acme, external_id="vault-2")
    assert (crm.kind, crm.vendor_type, crm.backup_status.status) == (
        "salesforce",
        "acme/crm",
        BackupStatus.FAILED,
    )
    assert BackupAuditEvent.objects.filter(connection=acme, connector=crm).count() == 3
    acme.refresh_from_db()
    assert acme.sync_state == {"page": "done"}  # committed with the last batch
    again = run_sync(acme, now=NOW)
    assert again.counts["events_added"] == 0  # the same dedup keys
    assert again.counts["connectors_added"] == 0


def test_a_second_vendor_shows_with_its_own_name_on_the_pages_and_in_alerts(
    acme: Connection, client: Client, admin_user: User
) -> None:
    run_sync(acme, now=NOW)
    FailedRuleFactory.create()
    opened = alert_services.evaluate(now=NOW).opened
    alert = next(a for a in opened if a.kind == Alert.Kind.BACKUP_FAILED)
    assert alert.detail == "Acme Backup says: The vault lost its sign-in to the tenant."
    client.force_login(admin_user)
    cards = client.get("/admin/integrations/").content.decode()
    assert 'data-provider="acme"' in cards
    assert "Acme Backup" in cards
    dashboard = client.get("/admin/backups/").content.decode()
    assert "Acme EU</a> (Acme Backup): data as of" in " ".join(dashboard.split())
    assert "Globex CRM" in dashboard.split('id="attention-list"')[1]
    customer = AccountLink.objects.get(external_id="acme-1").customer
    assert customer is not None
    page = client.get(f"/admin/customers/customer/{customer.pk}/change/").content.decode()
    assert "Acme Backup account acme-1" in page
