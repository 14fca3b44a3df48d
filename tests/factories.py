"""Test data (factory-boy): one factory per model, with the defaults a healthy fleet has.

Tests set only what their story is about: `ConnectorFactory(customer=contoso,
backup_status__last_success_at=three_days_ago)`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from factory.declarations import LazyAttribute, LazyFunction, RelatedFactory, Sequence, SubFactory
from factory.django import DjangoModelFactory

from alerts.models import AlertRule
from backups.models import (
    AccountLink,
    AccountSeat,
    AuditCategory,
    BackupAuditEvent,
    BackupConnector,
    BackupConnectorStatus,
    BackupJobDay,
    BackupStatus,
)
from customers.models import Customer
from integrations.models import Connection

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class CustomerFactory(DjangoModelFactory[Customer]):
    class Meta:
        model = Customer

    name = Sequence(lambda n: f"Customer {n}")


class ConnectionFactory(DjangoModelFactory[Connection]):
    """Disabled unless a test says otherwise, so only the sync-check tests see one."""

    class Meta:
        model = Connection

    provider = "keepit"
    name = "Keepit US"
    enabled = False
    last_success_at = NOW - timedelta(minutes=5)


def _connection() -> Connection:
    """The fleet's one connection (created on first use)."""
    return Connection.objects.filter(provider="keepit").first() or ConnectionFactory.create()


class AccountLinkFactory(DjangoModelFactory[AccountLink]):
    class Meta:
        model = AccountLink

    connection = LazyFunction(_connection)
    external_id = Sequence(lambda n: f"acct-{n:06d}")
    company_name = LazyAttribute(lambda link: link.customer.name if link.customer else "")
    customer = SubFactory(CustomerFactory)
    state = AccountLink.State.LINKED
    method = AccountLink.Method.EXACT
    first_seen_at = NOW - timedelta(days=30)
    last_seen_at = NOW


class ConnectorFactory(DjangoModelFactory[BackupConnector]):
    """A live connector with a healthy status row (`backup_status__…` to change it; pass
    `backup_status=None` for a connector never read)."""

    class Meta:
        model = BackupConnector
        # The status row is the related object; the connector needs no second save.
        skip_postgeneration_save = True

    connection = LazyFunction(_connection)
    customer = SubFactory(CustomerFactory)
    external_id = Sequence(lambda n: f"dev-{n:06d}")
    name = "Microsoft 365"
    kind = "m365"
    vendor_type = "o365-admin"
    first_seen_at = NOW - timedelta(days=30)
    last_seen_at = NOW
    backup_status = RelatedFactory(
        "tests.factories.StatusFactory", factory_related_name="connector"
    )


class StatusFactory(DjangoModelFactory[BackupConnectorStatus]):
    class Meta:
        model = BackupConnectorStatus

    connector = SubFactory(ConnectorFactory, backup_status=None)
    status = BackupStatus.OK
    health = "healthy"
    last_success_at = NOW - timedelta(hours=2)
    last_backup_at = LazyAttribute(lambda s: s.last_success_at)
    checked_at = NOW


class AuditEventFactory(DjangoModelFactory[BackupAuditEvent]):
    """A failed restore in the audit log (what Backup Failed looks for)."""

    class Meta:
        model = BackupAuditEvent

    connector = SubFactory(ConnectorFactory)
    connection = LazyAttribute(lambda e: e.connector.connection)
    customer = LazyAttribute(lambda e: e.connector.customer)
    occurred_at = NOW - timedelta(hours=1)
    category = AuditCategory.RECOVERY
    area = "Backup/Restore"
    message = "Restore job failed"
    succeeded = False
    dedup_key = Sequence(lambda n: f"event-{n:08d}")


class StaleRuleFactory(DjangoModelFactory[AlertRule]):
    class Meta:
        model = AlertRule

    name = "Stale backups"
    kind = AlertRule.Kind.BACKUP_STALE
    recipients = "tech@msp.example"


class FailedRuleFactory(StaleRuleFactory):
    name = "Failed backups"
    kind = AlertRule.Kind.BACKUP_FAILED


class JobDayFactory(DjangoModelFactory[BackupJobDay]):
    """A day of backup jobs: two successful ones unless a test says otherwise."""

    class Meta:
        model = BackupJobDay

    connector = SubFactory(ConnectorFactory)
    day = NOW.date()
    successful = 2
    closed = True
    checked_at = NOW


class SeatFactory(DjangoModelFactory[AccountSeat]):
    class Meta:
        model = AccountSeat

    account_link = SubFactory(AccountLinkFactory)
    resource = "o365-admin-seats-total"
    label = "Microsoft 365 seats"
    usage = 80
    limit = 100
    checked_at = NOW
