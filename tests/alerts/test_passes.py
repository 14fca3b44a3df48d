"""Incremental evaluation passes (alerts/passes.py): the writes a rule reads are captured
by triggers in the writers' transactions; a pass looks only at the connectors written or
crossed by the time since the rule's last pass, and decides exactly what a full pass
would."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from io import StringIO
from typing import Any

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection as db
from django.db import transaction
from django.test.utils import CaptureQueriesContext

from alerts import passes, services
from alerts.evaluation import failed_conditions
from alerts.models import Alert, AlertEvent, AlertRule, RulePass
from backups.models import (
    AccountLink,
    BackupAuditEvent,
    BackupConnector,
    BackupConnectorStatus,
    BackupJobDay,
    BackupStatus,
    JobOutcome,
)
from customers.models import Customer
from tests.conftest import query_plan
from tests.factories import (
    NOW,
    AccountLinkFactory,
    AuditEventFactory,
    ConnectorFactory,
    FailedRuleFactory,
    JobDayFactory,
    StaleRuleFactory,
    StatusFactory,
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


def _status_row_added(connector: BackupConnector) -> None:
    BackupConnectorStatus.objects.filter(connector=connector).delete()
    passes.take_changes()
    StatusFactory.create(connector=connector)


def _status_row_deleted(connector: BackupConnector) -> None:
    BackupConnectorStatus.objects.filter(connector=connector).delete()


def _job_day_moved_away(connector: BackupConnector) -> None:
    BackupJobDay.objects.filter(connector=connector).update(connector=ConnectorFactory.create())


def _failure_found_to_succeed(connector: BackupConnector) -> None:
    event = AuditEventFactory.create(connector=connector)
    passes.take_changes()
    type(event).objects.filter(pk=event.pk).update(succeeded=True)


def _failure_deleted(connector: BackupConnector) -> None:
    event = AuditEventFactory.create(connector=connector)
    passes.take_changes()
    type(event).objects.filter(pk=event.pk).delete()


def _account_deletion_scheduled(connector: BackupConnector) -> None:
    AccountLink.objects.filter(connectors=connector).update(deletion_scheduled_at=NOW)


def _account_deleted(connector: BackupConnector) -> None:
    AccountLink.objects.filter(connectors=connector).delete()


def _alert_opened(connector: BackupConnector) -> None:
    Alert.objects.create(
        key=f"x:{connector.pk}",
        kind=Alert.Kind.BACKUP_FAILED,
        connector=connector,
        opened_at=NOW,
        last_seen_at=NOW,
    )


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
        _job_day_moved_away,
        _status_updated,
        _status_row_added,
        _status_row_deleted,
        _connector_removed,
        _failure_logged,
        _failure_moved_here,
        _failure_found_to_succeed,
        _failure_deleted,
        _account_excluded,
        _account_deletion_scheduled,
        _account_deleted,
        _customer_renamed,
        _alert_opened,
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


def open_words(rule: AlertRule) -> dict[str, tuple[str, str]]:
    return {
        key: (summary, detail)
        for key, summary, detail in Alert.objects.filter(
            rule=rule, resolved_at__isnull=True
        ).values_list("key", "summary", "detail")
    }


def what_a_full_pass_leaves(rule: AlertRule, now: datetime) -> dict[str, tuple[str, str]]:
    """The open alerts and their words a full pass at `now` would leave, from the data
    as it is: run and rolled back (the rules' last passes forgotten, as for an edited
    rule)."""
    savepoint = transaction.savepoint()
    RulePass.objects.all().delete()
    evaluate(now)
    left = open_words(rule)
    transaction.savepoint_rollback(savepoint)
    return left


def run_story(rule: AlertRule, steps: list[Callable[[], object]]) -> datetime:
    """Each step's writes, then a pass 5 minutes later: it leaves the open alerts, words
    and all, that a full pass at that moment would. Returns the last pass's time."""
    now = NOW
    evaluate(now)
    assert RulePass.objects.get(rule=rule).full_at == now
    for number, step in enumerate(steps, start=1):
        step()
        now += timedelta(minutes=5)
        expected = what_a_full_pass_leaves(rule, now)
        evaluate(now)
        assert open_words(rule) == expected, f"after step {number}"
    assert RulePass.objects.get(rule=rule).full_at == NOW, "every later pass was incremental"
    return now


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
    evaluate(NOW)
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
    run_story(rule, steps)
    assert {a.connector_id for a in Alert.objects.filter(rule=rule, resolved_at=None)} == {
        failing.pk,
        resolved_by_hand.pk,
    }


def jobs_fail_unseen(connector: BackupConnector) -> None:
    """The connector's job days turn to failures, written with the triggers off (as no
    writer of the product does: a data-only restore, a table copied in)."""
    with db.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        BackupJobDay.objects.filter(connector=connector).update(unsuccessful=5)
        cursor.execute("SET session_replication_role = DEFAULT")


def test_a_write_no_trigger_sees_waits_for_the_hourly_full_pass() -> None:
    """The incremental pass looks only at what changed: a job day written with the
    triggers off (as no writer of the product does) is seen by the next full pass, at
    most an hour after the last one."""
    rule = success_rate_rule()
    connector = ConnectorFactory.create()
    JobDayFactory.create(connector=connector)
    evaluate(NOW)
    jobs_fail_unseen(connector)

    evaluate(NOW + timedelta(minutes=30))
    assert open_keys(rule) == set()

    evaluate(NOW + passes.FULL_PASS_EVERY)
    assert open_keys(rule) == {f"{rule.pk}:{connector.pk}"}
    assert RulePass.objects.get(rule=rule).full_at == NOW + passes.FULL_PASS_EVERY


def test_evaluate_alerts_full_looks_at_every_connector_at_once() -> None:
    """After rows were loaded with the triggers off (a data-only restore, a table copied
    in), `evaluate_alerts --full` does not wait for the hourly full pass."""
    rule = success_rate_rule()
    connector = ConnectorFactory.create()
    JobDayFactory.create(connector=connector)
    evaluate(NOW)
    jobs_fail_unseen(connector)

    with time_machine.travel(NOW + timedelta(minutes=5), tick=False):
        call_command("evaluate_alerts", "--full", "--no-send", stdout=StringIO())

    assert open_keys(rule) == {f"{rule.pk}:{connector.pk}"}
    assert RulePass.objects.get(rule=rule).full_at == NOW + timedelta(minutes=5)


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


def test_no_capture_or_too_many_changes_mean_a_full_pass() -> None:
    rule = success_rate_rule()
    last = RulePass(rule=rule, evaluated_at=NOW, full_at=NOW, fingerprint="same")
    later = NOW + timedelta(minutes=5)
    counted: list[int] = []

    def fleet_of(size: int) -> Callable[[], int]:
        def fleet() -> int:
            counted.append(size)
            return size

        return fleet

    chosen = passes.connectors_to_evaluate(
        rule, last, now=later, changes=None, fingerprint="same", fleet=fleet_of(12)
    )
    assert chosen is None
    assert passes.connectors_to_evaluate(
        rule, last, now=later, changes={1, 2}, fingerprint="same", fleet=fleet_of(12)
    ) == {1, 2}
    assert counted == [], "a few connectors to look at: the fleet is not counted"
    # More than a sixth of the fleet (and than 1,000): a full pass costs less.
    many = set(range(10_001))
    for size, full in ((60_000, True), (60_006, False)):
        chosen = passes.connectors_to_evaluate(
            rule, last, now=later, changes=many, fingerprint="same", fleet=fleet_of(size)
        )
        assert (chosen is None) is full


def test_an_incremental_stale_pass_decides_what_a_full_pass_would() -> None:
    """Backups growing old and onboarding grace running out with no write at all, and
    the writes that end or start a stale backup."""
    rule = StaleRuleFactory.create(threshold_hours=48, onboarding_grace_hours=72)
    ages = {"aging": 48 * 60 - 7, "fresh": 60, "stale": 50 * 60, "skewed": -10}
    connectors = {
        name: ConnectorFactory.create(
            account_link=AccountLinkFactory.create(),
            backup_status__last_success_at=NOW - timedelta(minutes=minutes),
        )
        for name, minutes in ages.items()
    }
    onboarding = ConnectorFactory.create(
        account_link=AccountLinkFactory.create(),
        first_seen_at=NOW - timedelta(hours=72, minutes=-12),
        backup_status__last_success_at=None,
    )
    unread = ConnectorFactory.create(backup_status=None)
    steps: list[Callable[[], object]] = [
        # (nothing written; at the second pass "aging" crosses 48 hours, at the third
        # "onboarding" runs out of grace)
        lambda: None,
        lambda: None,
        # A complete backup arrives for the stale one.
        lambda: BackupConnectorStatus.objects.filter(connector=connectors["stale"]).update(
            last_success_at=NOW
        ),
        # A connector's status row goes (read again later): never backed up, long known.
        lambda: BackupConnectorStatus.objects.filter(connector=connectors["fresh"]).delete(),
        lambda: BackupConnector.objects.filter(pk=connectors["aging"].pk).update(
            deletion_scheduled_at=NOW
        ),
        lambda: AccountLink.objects.filter(connectors=onboarding).update(deletion_scheduled_at=NOW),
        lambda: BackupConnector.objects.filter(pk=unread.pk).update(first_seen_at=NOW),
    ]
    end = run_story(rule, steps)
    assert {a.connector_id for a in Alert.objects.filter(rule=rule, resolved_at=None)} == {
        connectors["fresh"].pk
    }
    assert end - NOW < passes.FULL_PASS_EVERY


def failed_job_since_last_success(
    connector: BackupConnector, at: datetime, *, error: str = ""
) -> None:
    """A backup job of the connector failed at `at`; its last complete backup was a day
    before."""
    BackupConnectorStatus.objects.filter(connector=connector).update(
        last_success_at=at - timedelta(days=1)
    )
    JobDayFactory.create(
        connector=connector,
        day=at.date(),
        unsuccessful=1,
        last_failure_at=at,
        last_failure_outcome=JobOutcome.FAILED,
        last_error=error,
    )


def test_an_incremental_failed_pass_decides_what_a_full_pass_would_words_and_all() -> None:
    """Failures in the audit log and in the job data arriving, leaving the lookback or
    the days kept, coming due from a skewed clock, and what ends them; the open alerts'
    words follow the data (a renamed customer, the vendor's fix text)."""
    rule = FailedRuleFactory.create(lookback_hours=24)
    fleet = [ConnectorFactory.create(account_link=AccountLinkFactory.create()) for _ in range(8)]
    logged, skewed, leaving, job_failed, vendor_failed, old_job, renamed, relapsed = fleet
    # A failed job three days ago, no complete backup since, no alert (outside the
    # lookback): once a new failure opens an alert, the alert holds on to that job too
    # (the pass after the opening says so).
    failed_job_since_last_success(
        relapsed, NOW - timedelta(days=3), error="Throttled by Microsoft Graph"
    )
    AuditEventFactory.create(connector=leaving, occurred_at=NOW - timedelta(hours=23, minutes=48))
    AuditEventFactory.create(connector=skewed, occurred_at=NOW + timedelta(minutes=7))
    AuditEventFactory.create(connector=renamed)
    # An old failed job whose alert is open: it holds until the failure leaves the 28
    # days kept (4 minutes from now).
    failed_job_since_last_success(old_job, NOW - timedelta(days=28) + timedelta(minutes=4))
    Alert.objects.create(
        key=f"{rule.pk}:{old_job.pk}",
        kind=Alert.Kind.BACKUP_FAILED,
        rule=rule,
        connector=old_job,
        opened_at=NOW - timedelta(days=27),
        last_seen_at=NOW - timedelta(days=27),
    )
    steps: list[Callable[[], object]] = [
        # (nothing written: the old job leaves the 28 days; at the next pass the skewed
        # failure comes due)
        lambda: None,
        lambda: AuditEventFactory.create(connector=logged, message="Restore of mailbox failed"),
        # (the failure at the lookback's edge leaves it)
        lambda: None,
        lambda: JobDayFactory.create(
            connector=job_failed,
            unsuccessful=1,
            last_failure_at=NOW,
            last_failure_outcome=JobOutcome.FAILED,
            last_error="Mailbox quota exceeded",
        ),
        # The job's error arrives a sync later: the open alert's words follow it.
        lambda: BackupJobDay.objects.filter(connector=job_failed).update(
            last_error="Mailbox quota exceeded (50 GB)"
        ),
        lambda: BackupConnectorStatus.objects.filter(connector=vendor_failed).update(
            status=BackupStatus.FAILED,
            reason="auth",
            reason_text="Authentication lost",
            reason_is_failure=True,
        ),
        lambda: BackupConnectorStatus.objects.filter(connector=vendor_failed).update(
            fix_text="Sign in again as a Global Administrator"
        ),
        lambda: Customer.objects.filter(connectors=renamed).update(name="Renamed A/S"),
        # A complete backup after the failed job ends that alert.
        lambda: BackupConnectorStatus.objects.filter(connector=job_failed).update(
            last_success_at=NOW + timedelta(minutes=50)
        ),
        lambda: AuditEventFactory.create(connector=relapsed, occurred_at=NOW),
        # (nothing written: the open alert now holds on to the older failed job)
        lambda: None,
    ]
    evaluate(NOW)
    assert Alert.objects.get(rule=rule, connector=old_job).resolved_at is None
    run_story(rule, steps)
    still_open = {a.connector_id for a in Alert.objects.filter(rule=rule, resolved_at=None)}
    assert still_open == {logged.pk, skewed.pk, vendor_failed.pk, renamed.pk, relapsed.pk}
    relapse = Alert.objects.get(rule=rule, connector=relapsed, resolved_at=None)
    assert "Throttled by Microsoft Graph" in relapse.detail
    renamed_alert = Alert.objects.get(rule=rule, connector=renamed, resolved_at=None)
    assert renamed_alert.summary.startswith("Renamed A/S: ")


def test_an_incremental_pass_reminds_the_alerts_it_did_not_look_at() -> None:
    rule = StaleRuleFactory.create(reminder_hours=2)
    connector = ConnectorFactory.create(backup_status__last_success_at=NOW - timedelta(days=3))
    evaluate(NOW)
    alert = Alert.objects.get(rule=rule, connector=connector)
    Alert.objects.filter(pk=alert.pk).update(last_notified_at=NOW - timedelta(hours=3))
    passes.take_changes()  # (the opening's own mark: as if nothing changed since)
    later = NOW + timedelta(minutes=5)
    looked_at = passes.connectors_to_evaluate(
        rule,
        RulePass.objects.get(rule=rule),
        now=later,
        changes=set(),
        fingerprint=passes.fingerprint(rule, []),
        fleet=lambda: 1,
    )
    assert looked_at is not None
    assert connector.pk not in looked_at

    evaluate(later)

    assert RulePass.objects.get(rule=rule).full_at == NOW, "the pass was incremental"
    alert.refresh_from_db()
    assert alert.last_notified_at == NOW + timedelta(minutes=5)
    assert alert.events.filter(kind=AlertEvent.Kind.REMINDER).count() == 1


@pytest.mark.parametrize("change", ["time zone", "vendor name"])
def test_a_full_pass_after_the_time_zone_or_a_vendor_name_changed(
    change: str, settings: Any
) -> None:
    """The failed-backup alerts' words give times in the server's time zone and name
    the vendor: after a deploy that changes either, every open alert is reworded."""
    rule = FailedRuleFactory.create()
    AuditEventFactory.create()  # at 11:00 UTC
    evaluate(NOW)
    passes.take_changes()  # (the opening's own mark: as if nothing changed since)
    if change == "time zone":
        settings.TIME_ZONE = "Europe/Copenhagen"
        said = "Failed in the Keepit audit log at 2026-11-26T12:00+01:00"
    else:
        # The provider no longer configured: messages name it by its kind.
        settings.VECTIS_PROVIDERS = {}
        said = "Failed in the keepit audit log at 2026-11-26T11:00+00:00"

    evaluate(NOW + timedelta(minutes=5))

    assert RulePass.objects.get(rule=rule).full_at == NOW + timedelta(minutes=5)
    [alert] = Alert.objects.filter(rule=rule, resolved_at=None)
    assert said in alert.detail, alert.detail


def test_an_incremental_failed_pass_reads_its_connectors_failures_from_their_index() -> None:
    """The failures of the few connectors a pass looks at come from index
    audit_connector_failure_idx, not from the lookback's failures of the whole fleet
    (index audit_failure_time_idx) nor from every event of those connectors."""
    rule = FailedRuleFactory.create()
    fleet = ConnectorFactory.create_batch(20)
    # As in a fleet: each connector's log is mostly successes (at 80,000 connectors, 88
    # events each over 14 days), its failures a few, the fleet's failures many.
    BackupAuditEvent.objects.bulk_create(
        AuditEventFactory.build(
            connector=connector,
            connection=connector.connection,
            customer=connector.customer,
            occurred_at=NOW - timedelta(hours=hours),
            succeeded=hours % 20 != 0,
        )
        for connector in fleet
        for hours in range(0, 300, 3)
    )
    with CaptureQueriesContext(db) as captured:
        failed_conditions(rule, now=NOW, only={fleet[0].pk})
    [events] = [q["sql"] for q in captured.captured_queries if "backup_audit_events" in q["sql"]]

    plan = query_plan(events, table="backup_audit_events", expensive="enable_seqscan")

    assert "audit_connector_failure_idx" in plan, plan


def test_an_opening_finds_its_conditions_previous_alert_from_the_resolved_keys_index() -> None:
    rule = StaleRuleFactory.create()
    connector = ConnectorFactory.create(backup_status__last_success_at=NOW - timedelta(days=3))
    Alert.objects.bulk_create(
        Alert(
            key=f"{rule.pk}:{n}",  # (connectors that no longer exist)
            kind=Alert.Kind.BACKUP_STALE,
            opened_at=NOW - timedelta(days=2),
            last_seen_at=NOW - timedelta(days=2),
            resolved_at=NOW - timedelta(days=1),
            state=Alert.State.RESOLVED,
        )
        for n in range(10**6, 10**6 + 300)
    )
    with CaptureQueriesContext(db) as captured:
        evaluate(NOW)
    [previous] = [
        q["sql"]
        for q in captured.captured_queries
        if q["sql"].startswith('SELECT "alerts"."key"') and "IS NOT NULL" in q["sql"]
    ]

    plan = query_plan(previous, table="alerts", expensive="enable_seqscan")

    assert "alert_resolved_key_idx" in plan, plan
    assert Alert.objects.get(connector=connector).previous is None


def test_the_stale_rule_finds_what_the_time_crossed_from_indexes() -> None:
    """Each incremental pass asks which last complete backups grew past the threshold,
    and which onboarding graces ran out, in the minutes since the last pass: through
    connector_status_success_idx and connector_first_seen_idx, not a read of every
    status row and every connector (about 15 ms each at 80,000 connectors)."""
    rule = StaleRuleFactory.create()
    for hours in range(0, 200, 2):
        ConnectorFactory.create(
            first_seen_at=NOW - timedelta(hours=hours),
            backup_status__last_success_at=NOW - timedelta(hours=hours),
        )
    with CaptureQueriesContext(db) as captured:
        passes._crossed(rule, since=NOW, now=NOW + timedelta(minutes=5))
    [aged, onboarded] = [q["sql"] for q in captured.captured_queries]

    assert "connector_status_success_idx" in query_plan(
        aged, table="backup_connector_status", expensive="enable_seqscan"
    )
    assert "connector_first_seen_idx" in query_plan(
        onboarded, table="backup_connectors", expensive="enable_seqscan"
    )
