"""One alert per root cause: a connection that cannot sync, or an account whose
connectors all fail for one reason, is told once; the per-connector alerts it explains
wait, and are told only if they outlive it (issue "Alerts where MSPs work")."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail

from alerts import services
from alerts.models import Alert
from backups.models import BackupConnectorStatus
from integrations.models import Connection
from tests.factories import (
    NOW,
    AccountLinkFactory,
    ConnectionFactory,
    ConnectorFactory,
    CustomerFactory,
    FailedRuleFactory,
    StaleRuleFactory,
)

pytestmark = pytest.mark.django_db
HOUR = timedelta(hours=1)


def stale_fleet_behind_a_broken_sync() -> Connection:
    """Three connectors gone stale because their connection has not synced for hours."""
    connection = ConnectionFactory.create(enabled=True, last_success_at=NOW - 5 * HOUR)
    customer = CustomerFactory.create(name="Contoso Ltd")
    for name in ("Mail", "Files", "Teams"):
        ConnectorFactory.create(
            connection=connection,
            customer=customer,
            name=f"Contoso {name}",
            backup_status__last_success_at=NOW - timedelta(days=3),
        )
    StaleRuleFactory.create(recipients="noc@msp.example")
    return connection


def test_a_broken_sync_is_told_once_and_its_connectors_wait_behind_it() -> None:
    connection = stale_fleet_behind_a_broken_sync()
    services.evaluate(now=NOW)
    parent = Alert.objects.get(kind=Alert.Kind.SYNC_STALE)
    children = Alert.objects.filter(kind=Alert.Kind.BACKUP_STALE)
    assert children.count() == 3  # evaluated and open, as always
    assert set(children.values_list("parent_id", flat=True)) == {parent.pk}
    assert [m.subject for m in mail.outbox] == ["[Vectis] 1 sync stale — Vectis: Keepit US"]
    # The sync comes back but the connectors stay stale: they outlived their parent, and
    # are told now.
    Connection.objects.filter(pk=connection.pk).update(last_success_at=NOW + HOUR)
    services.evaluate(now=NOW + HOUR)
    subjects = [m.subject for m in mail.outbox[1:]]
    assert subjects == ["[Vectis] 3 backups stale, 1 resolved — Contoso Ltd: Contoso Files"]


def test_connectors_that_recover_with_their_sync_are_never_told_on_their_own() -> None:
    connection = stale_fleet_behind_a_broken_sync()
    services.evaluate(now=NOW)
    assert len(mail.outbox) == 1
    Connection.objects.filter(pk=connection.pk).update(last_success_at=NOW + HOUR)
    BackupConnectorStatus.objects.update(last_success_at=NOW + HOUR)
    services.evaluate(now=NOW + HOUR)
    # Only the parent's resolution: its children's story was its own.
    assert [m.subject for m in mail.outbox[1:]] == ["[Vectis] 1 resolved — Vectis: Keepit US"]
    assert not Alert.objects.filter(resolved_at__isnull=True).exists()


def test_an_account_whose_connectors_all_fail_for_one_reason_is_one_alert() -> None:
    customer = CustomerFactory.create(name="Fabrikam")
    connection = ConnectionFactory.create(enabled=True)
    link = AccountLinkFactory.create(
        connection=connection, customer=customer, company_name="Fabrikam"
    )
    failed = {
        "backup_status__status": "failed",
        "backup_status__reason": "BADLOGIN",
        "backup_status__reason_text": "Keepit lost its sign-in to the tenant",
        "backup_status__reason_is_failure": True,
    }
    for name in ("Mail", "Entra ID"):
        ConnectorFactory.create(
            connection=connection,
            customer=customer,
            account_link=link,
            name=f"Fabrikam {name}",
            **failed,
        )
    FailedRuleFactory.create(recipients="noc@msp.example")
    services.evaluate(now=NOW)
    account = Alert.objects.get(kind=Alert.Kind.ACCOUNT_FAILING)
    assert account.summary == (
        "Fabrikam — all 2 connectors failing: Keepit lost its sign-in to the tenant"
    )
    per_connector = Alert.objects.filter(kind=Alert.Kind.BACKUP_FAILED)
    assert per_connector.count() == 2
    assert set(per_connector.values_list("parent_id", flat=True)) == {account.pk}
    (message,) = mail.outbox
    assert message.subject.startswith("[Vectis] 1 account with every connector failing")
    assert "Fabrikam Mail" in message.body  # named in the one alert's detail


def test_a_connector_told_before_its_sync_broke_is_told_when_it_recovers() -> None:
    connection = ConnectionFactory.create(enabled=True, last_success_at=NOW - timedelta(minutes=5))
    connector = ConnectorFactory.create(
        connection=connection,
        customer=CustomerFactory.create(name="Contoso Ltd"),
        name="Contoso Mail",
        backup_status__last_success_at=NOW - timedelta(days=3),
    )
    StaleRuleFactory.create(recipients="noc@msp.example")
    services.evaluate(now=NOW)
    assert [m.subject for m in mail.outbox] == [
        "[Vectis] 1 backup stale — Contoso Ltd: Contoso Mail"
    ]
    # Then the sync breaks: the connection's alert opens; the connector's alert, already
    # told, is not put behind it.
    services.evaluate(now=NOW + 2 * HOUR)
    assert Alert.objects.get(connector=connector).parent is None
    BackupConnectorStatus.objects.update(last_success_at=NOW + 2 * HOUR)
    services.evaluate(now=NOW + 3 * HOUR)
    subjects = [m.subject for m in mail.outbox[1:]]
    assert subjects == [
        "[Vectis] 1 sync stale — Vectis: Keepit US",
        "[Vectis] 1 resolved — Contoso Ltd: Contoso Mail",  # the team hears it recovered
    ]
