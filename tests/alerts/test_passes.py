"""Incremental evaluation passes (alerts/passes.py): the writes a rule reads are captured
by triggers in the writers' transactions; a pass looks only at the connectors written or
crossed by the time since the rule's last pass, and decides exactly what a full pass
would."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection as db
from django.db import transaction

from alerts import passes, services
from alerts.evaluation import rule_conditions
from alerts.models import Alert, AlertRule, RulePass
from backups.models import AccountLink, BackupConnector, BackupConnectorStatus, BackupJobDay
from customers.models import Customer
from tests.factories import (
    NOW,
    AccountLinkFactory,
    AuditEventFactory,
    ConnectorFactory,
    JobDayFactory,
)

pytestmark = pytest.mark.django_db


def success_rate_rule(**fields: Any) -> AlertRule:
    return AlertRule.objects.create(
        name="Success rate",
        kind=AlertRule.Kind.SUCCESS_RATE,
        success_rate_days=7,
        success_rate_percent=90,
        recipients="noc@msp.example",
        **fields,
    )


def open_keys(rule: AlertRule) -> set[str]:
    return set(
        Alert.objects.filter(rule=rule, resolved_at__isnull=True).values_list("key", flat=True)
    )


def full_pass_keys(rule: AlertRule, now: datetime) -> set[str]:
    """What a full pass finds holding now (every connector looked at)."""
    return set(rule_conditions(rule, now=now).keys)


def evaluate(now: datetime) -> None:
    services.evaluate(now=now, send=False)


# --- change capture ------------------------------------------------------------------------


def _job_day_written(connector: BackupConnector) -> None:
    JobDayFactory.create(connector=connector, day=NOW.date() - timedelta(days=1))


def _job_day_updated(connector: BackupConnector) -> None:
    BackupJobDay.objects.filter(connector=connector).update(unsuccessful=3)


def _job_day_deleted(connector: BackupConnector) -> None:
    BackupJobDay.objects.filter(connector=connector).delete()


def _status_updated(connector: BackupConnector) -> None:
    BackupConnectorStatus.objects.filter(connector=connector).update(status="failed")


def _connector_removed(connector: BackupConnector) -> None:
    BackupConnector.objects.filter(pk=connector.pk).update(removed_at=NOW)


def _failure_logged(connector: BackupConnector) -> None:
    AuditEventFactory.create(connector=connector)


def _failure_moved_here(connector: BackupConnector) -> None:
    event = AuditEventFactory.create(connector=ConnectorFactory.create())
    passes.take_changes()  # the other connector's insert
    type(event).objects.filter(pk=event.pk).update(connector=connector)


def _account_excluded(connector: BackupConnector) -> None:
    AccountLink.objects.filter(connectors=connector).update(state=AccountLink.State.EXCLUDED)


def _customer_renamed(connector: BackupConnector) -> None:
    Customer.objects.filter(connectors=connector).update(name="Fabrikam A/S")


def _open_alert_resolved_by_hand(connector: BackupConnector) -> None:
    alert = Alert.objects.create(
        key=f"x:{connector.pk}",
        kind=Alert.Kind.SUCCESS_RATE,
        connector=connector,
        opened_at=NOW,
        last_seen_at=NOW,
    )
    passes.take_changes()
    Alert.objects.filter(pk=alert.pk).update(resolved_at=NOW)


@pytest.mark.parametrize(
    "write",
    [
        _job_day_written,
        _job_day_updated,
        _job_day_deleted,
        _status_updated,
        _connector_removed,
        _failure_logged,
        _failure_moved_here,
        _account_excluded,
        _customer_renamed,
        _open_alert_resolved_by_hand,
    ],
    ids=lambda write: write.__name__.strip("_"),
)
def test_each_write_a_rule_reads_marks_its_connector_changed(
    write: Callable[[BackupConnector], None],
) -> None:
    connector = ConnectorFactory.create(account_link=AccountLinkFactory.create())
    JobDayFactory.create(connector=connector)
    bystander = ConnectorFactory.create()
    passes.take_changes()  # what the setup wrote

    write(connector)

    changed = passes.take_changes()
    assert changed is not None
    assert connector.pk in changed
    assert bystander.pk not in changed
    assert passes.take_changes() == set(), "each change is taken once"


def test_writes_no_rule_reads_mark_nothing() -> None:
    connector = ConnectorFactory.create(account_link=AccountLinkFactory.create())
    passes.take_changes()

    AuditEventFactory.create(connector=connector, succeeded=True, message="Restore done")
    AccountLink.objects.filter(connectors=connector).update(last_seen_at=NOW)
    Customer.objects.filter(connectors=connector).update(created_at=NOW)

    assert passes.take_changes() == set()


def test_a_pass_rolled_back_leaves_its_changes_for_the_next() -> None:
    connector = ConnectorFactory.create()
    passes.take_changes()
    JobDayFactory.create(connector=connector)

    taken: list[set[int] | None] = []

    def failing_pass() -> None:
        with transaction.atomic():
            taken.append(passes.take_changes())
            raise RuntimeError("the pass failed")

    with pytest.raises(RuntimeError):
        failing_pass()

    assert taken == [{connector.pk}]
    assert passes.take_changes() == {connector.pk}


# --- incremental passes --------------------------------------------------------------------


def test_an_incremental_success_rate_pass_decides_what_a_full_pass_would() -> None:
    """A story of writes, each followed by a pass 5 minutes later: after every pass the
    open alerts are exactly what a full pass finds, and the passes after the first were
    incremental (the last full pass stays the first)."""
    rule = success_rate_rule(connector_kinds=["m365", "gworkspace"])
    fleet = [ConnectorFactory.create(account_link=AccountLinkFactory.create()) for _ in range(6)]
    for connector in fleet:
        JobDayFactory.create(connector=connector, successful=9, unsuccessful=0)
    failing, recovering, removed, excluded, moved, resolved_by_hand = fleet
    for connector in (recovering, removed, excluded, moved, resolved_by_hand):
        BackupJobDay.objects.filter(connector=connector).update(successful=1, unsuccessful=5)
    now = NOW
    evaluate(now)
    assert RulePass.objects.get(rule=rule).full_at == now
    assert len(open_keys(rule)) == 5

    steps: list[Callable[[], object]] = [
        # Today's jobs fail: under 90 %.
        lambda: BackupJobDay.objects.filter(connector=failing).update(unsuccessful=4),
        # A day of successes lifts the rate over 90 %.
        lambda: JobDayFactory.create(
            connector=recovering, day=NOW.date() - timedelta(days=1), successful=200
        ),
        lambda: BackupConnector.objects.filter(pk=removed.pk).update(removed_at=NOW),
        lambda: AccountLink.objects.filter(connectors=excluded).update(
            state=AccountLink.State.EXCLUDED
        ),
        # Out of the rule's kinds.
        lambda: BackupConnector.objects.filter(pk=moved.pk).update(kind="salesforce"),
        # Resolved by hand while its rate is still low: the next pass opens it again, as
        # a full pass would.
        lambda: Alert.objects.filter(rule=rule, connector=resolved_by_hand).update(
            resolved_at=NOW, state=Alert.State.RESOLVED
        ),
    ]
    for step in steps:
        step()
        now += timedelta(minutes=5)
        evaluate(now)
        assert open_keys(rule) == full_pass_keys(rule, now)

    assert RulePass.objects.get(rule=rule).full_at == NOW, "every later pass was incremental"
    assert {a.connector_id for a in Alert.objects.filter(rule=rule, resolved_at=None)} == {
        failing.pk,
        resolved_by_hand.pk,
    }


def test_a_write_no_trigger_sees_waits_for_the_hourly_full_pass() -> None:
    """The incremental pass looks only at what changed: a job day written with the
    triggers off (as no writer of the product does) is seen by the next full pass, at
    most an hour after the last one."""
    rule = success_rate_rule()
    connector = ConnectorFactory.create()
    JobDayFactory.create(connector=connector)
    evaluate(NOW)
    with db.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")  # triggers off
        BackupJobDay.objects.filter(connector=connector).update(unsuccessful=5)
        cursor.execute("SET session_replication_role = DEFAULT")

    evaluate(NOW + timedelta(minutes=30))
    assert open_keys(rule) == set()

    evaluate(NOW + passes.FULL_PASS_EVERY)
    assert open_keys(rule) == {f"{rule.pk}:{connector.pk}"}
    assert RulePass.objects.get(rule=rule).full_at == NOW + passes.FULL_PASS_EVERY


@pytest.mark.parametrize(
    "change",
    ["rule edited", "scope edited", "next day", "clock back", "disabled and enabled"],
)
def test_a_full_pass_when_the_rule_the_day_or_the_clock_changed(change: str) -> None:
    rule = success_rate_rule()
    connector = ConnectorFactory.create()
    JobDayFactory.create(connector=connector)
    evaluate(NOW)
    later = NOW + timedelta(minutes=5)
    if change == "rule edited":
        AlertRule.objects.filter(pk=rule.pk).update(success_rate_percent=50)
    elif change == "scope edited":
        rule.customers.add(Customer.objects.get(connectors=connector))
    elif change == "next day":
        later = NOW.replace(hour=23, minute=58) + timedelta(minutes=5)
        evaluate(NOW.replace(hour=23, minute=58))
    elif change == "clock back":
        later = NOW - timedelta(minutes=5)
    else:
        AlertRule.objects.filter(pk=rule.pk).update(enabled=False)
        evaluate(NOW + timedelta(minutes=1))
        AlertRule.objects.filter(pk=rule.pk).update(enabled=True)

    evaluate(later)

    assert RulePass.objects.get(rule=rule).full_at == later


def test_sqlite_or_no_capture_means_full_passes() -> None:
    rule = success_rate_rule()
    last = RulePass(rule=rule, evaluated_at=NOW, full_at=NOW, fingerprint="same")
    later = NOW + timedelta(minutes=5)
    chosen = passes.connectors_to_evaluate(rule, last, now=later, changes=None, fingerprint="same")
    assert chosen is None
    assert passes.connectors_to_evaluate(
        rule, last, now=later, changes={1, 2}, fingerprint="same"
    ) == {1, 2}
