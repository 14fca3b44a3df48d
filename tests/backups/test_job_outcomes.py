"""Backup outcomes from Keepit's job data, end to end against the sandbox: daily outcome
rows, the job's error in Backup failed, the success-rate rule, the day that closes after
midnight, and what it costs in requests."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest

from alerts.evaluation import success_rate_conditions
from alerts.models import Alert, AlertEvent, AlertRule
from alerts.services import evaluate
from backups.jobs import format_rate
from backups.models import (
    BackupConnector,
    BackupConnectorStatus,
    BackupJobDay,
    JobOutcome,
)
from integrations.models import SyncRun
from tests.conftest import START, connect, lists_due, make_sandbox, sync
from tests.factories import NOW, ConnectorFactory, JobDayFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def msp_sandbox() -> Any:
    sandbox = make_sandbox(own_read_audit=False)
    yield sandbox
    sandbox.stop()


def healthy_connector(sandbox: Any, *, kind: str = "o365-admin", skip: int = 0) -> Any:
    found = [
        c
        for account in sandbox.msp.accounts
        for c in sandbox.msp.connectors[account.guid]
        if c.scenario == "healthy" and c.type == kind and c.deletion_deadline is None
    ]
    return found[skip]


def next_job_end(connector: Any, after: datetime) -> datetime:
    """When the connector's next backup job ends (its next slot) after `after`."""
    now = after.timestamp()
    slot = connector.phase + ((now - connector.phase) // connector.cadence + 1) * connector.cadence
    return datetime.fromtimestamp(slot, after.tzinfo)


def failures_by_connector() -> dict[str, int]:
    """Incomplete + unsuccessful jobs per connector, over the stored days."""
    totals: dict[str, int] = {}
    for row in BackupJobDay.objects.select_related("connector"):
        key = row.connector.external_id
        totals[key] = totals.get(key, 0) + row.incomplete + row.unsuccessful
    return totals


def backup_failed_rule(**fields: Any) -> AlertRule:
    values: dict[str, Any] = {
        "name": "Failures",
        "kind": AlertRule.Kind.BACKUP_FAILED,
        "recipients": "noc@msp.example",
    }
    values.update(fields)
    return AlertRule.objects.create(**values)


def test_every_connector_gets_a_daily_outcome_row_with_the_counts_keepit_gives(
    msp_sandbox: Any, settings: Any
) -> None:
    settings.KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC = 0
    connection = connect(msp_sandbox, settings)
    run = sync(connection, msp_sandbox)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    live = BackupConnector.objects.filter(connection=connection, removed_at__isnull=True)
    rows = {
        row.connector.external_id: row for row in BackupJobDay.objects.select_related("connector")
    }
    # One row per connector for today, zeros included ("no job" is not "not read").
    assert set(rows) == set(live.values_list("external_id", flat=True))
    assert {row.day for row in rows.values()} == {START.date()}
    assert not any(row.closed for row in rows.values())
    # The counts are Keepit's: the sandbox's job history of the day agrees per outcome.
    healthy = healthy_connector(msp_sandbox)
    row = rows[healthy.guid]
    assert row.successful >= 1
    assert row.incomplete == row.unsuccessful == 0
    assert row.outcome == JobOutcome.SUCCESSFUL
    assert row.last_job_end_at is not None
    assert row.last_job_end_at.date() == START.date()
    # A connector whose jobs fail since its login broke has unsuccessful jobs today.
    broken = [
        c
        for a in msp_sandbox.msp.accounts
        for c in msp_sandbox.msp.connectors[a.guid]
        if c.scenario == "BADTOKEN" and c.stopped_at is not None
    ]
    assert broken, "the sandbox MSP should have a connector with a revoked token"
    assert rows[broken[0].guid].unsuccessful >= 1
    assert rows[broken[0].guid].outcome == JobOutcome.FAILED
    assert rows[broken[0].guid].last_error  # its history was read: Keepit's error sentence


def test_an_incomplete_job_raises_backup_failed_within_one_sync_with_its_error(
    msp_sandbox: Any, settings: Any
) -> None:
    settings.KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC = 0
    connection = connect(msp_sandbox, settings)
    rule = backup_failed_rule(include_failed_status=False)
    target = healthy_connector(msp_sandbox)
    assert sync(connection, msp_sandbox).outcome == SyncRun.Outcome.SUCCEEDED
    evaluate(now=msp_sandbox.clock.now_datetime(), send=False)
    connector = BackupConnector.objects.get(external_id=target.guid)
    assert not Alert.objects.filter(connector=connector).exists()

    error = "37 items could not be backed up: the mailbox is over its size limit"
    msp_sandbox.msp.set_job_outcome(
        target.guid, "incomplete", since=msp_sandbox.clock.now_datetime(), error=error
    )
    ends = next_job_end(target, msp_sandbox.clock.now_datetime())
    msp_sandbox.advance(ends - msp_sandbox.clock.now_datetime() + timedelta(minutes=5))
    before = failures_by_connector()
    msp_sandbox.server.reset_request_log()
    run = sync(connection, msp_sandbox)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    history = {
        e.path.split("/")[-2]
        for e in msp_sandbox.server.request_log
        if e.method == "PUT" and e.path.endswith("/jobs")
    }
    # The job history is read for the connectors with a new failure, and only for them.
    risen = {guid for guid, n in failures_by_connector().items() if n > before.get(guid, 0)}
    assert target.guid in history
    assert history == risen

    result = evaluate(now=msp_sandbox.clock.now_datetime(), send=False)
    alert = Alert.objects.get(connector=connector, resolved_at__isnull=True)
    assert alert in result.opened
    assert alert.rule == rule
    assert alert.kind == Alert.Kind.BACKUP_FAILED
    assert "ended incomplete" in alert.summary
    assert error in alert.summary
    assert error in alert.detail
    assert f"{ends:%Y-%m-%dT%H:%M}+00:00" in alert.detail  # when the job ended
    day = BackupJobDay.objects.get(connector=connector, day=ends.date())
    assert (day.incomplete, day.last_failure_outcome, day.last_error) == (1, "incomplete", error)
    # The message tells the recipients why.
    notification = result.notifications[0]
    assert error in notification.body_text

    # The next complete backup ends it.
    msp_sandbox.msp.set_job_outcome(
        target.guid, "successful", since=msp_sandbox.clock.now_datetime()
    )
    later = next_job_end(target, msp_sandbox.clock.now_datetime())
    msp_sandbox.advance(later - msp_sandbox.clock.now_datetime() + timedelta(minutes=5))
    sync(connection, msp_sandbox)
    result = evaluate(now=msp_sandbox.clock.now_datetime(), send=False)
    alert.refresh_from_db()
    assert alert.resolved_at is not None
    assert AlertEvent.objects.filter(alert=alert, kind=AlertEvent.Kind.RESOLVED).count() == 1


def test_the_success_rate_rule_opens_below_its_threshold_and_resolves_when_it_recovers(
    msp_sandbox: Any, settings: Any
) -> None:
    settings.KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC = 7
    connection = connect(msp_sandbox, settings)
    rule = AlertRule.objects.create(
        name="Success rate",
        kind=AlertRule.Kind.SUCCESS_RATE,
        success_rate_days=7,
        success_rate_percent=90,
        recipients="noc@msp.example",
    )
    target = healthy_connector(msp_sandbox)
    msp = msp_sandbox.msp
    # Two days ago every job failed; from yesterday on they succeed again.
    msp.set_job_outcome(target.guid, "unsuccessful", since=START - timedelta(days=2))
    msp.set_job_outcome(target.guid, "successful", since=START - timedelta(days=1))
    assert sync(connection, msp_sandbox).outcome == SyncRun.Outcome.SUCCEEDED
    connector = BackupConnector.objects.get(external_id=target.guid)
    days = BackupJobDay.objects.filter(connector=connector)
    assert days.count() == 8  # today and the seven days before it
    failed_day = days.get(day=(START - timedelta(days=2)).date())
    assert failed_day.unsuccessful >= 1
    assert failed_day.closed

    evaluate(now=msp_sandbox.clock.now_datetime(), send=False)
    alert = Alert.objects.get(rule=rule, connector=connector, resolved_at__isnull=True)
    assert alert.kind == Alert.Kind.SUCCESS_RATE
    total = sum(d.finished for d in days if d.day > (START - timedelta(days=7)).date())
    ok = sum(d.successful for d in days if d.day > (START - timedelta(days=7)).date())
    assert f"{ok} of {total} finished backup jobs succeeded" in alert.detail
    assert ok / total < 0.9
    # Only connectors whose jobs fail are alerted on (the sandbox has a few more).
    healthy = {
        c.guid
        for a in msp_sandbox.msp.accounts
        for c in msp_sandbox.msp.connectors[a.guid]
        if c.scenario == "healthy"
    }
    alerted = set(Alert.objects.filter(rule=rule).values_list("connector__external_id", flat=True))
    assert alerted & healthy == {target.guid}

    # Six days on, the failed day has left the 7-day window: the rate recovers.
    msp_sandbox.advance(timedelta(days=6))
    assert sync(connection, msp_sandbox).outcome == SyncRun.Outcome.SUCCEEDED
    evaluate(now=msp_sandbox.clock.now_datetime(), send=False)
    alert.refresh_from_db()
    assert alert.resolved_at is not None


def test_a_day_is_read_one_last_time_after_midnight_and_then_today(
    msp_sandbox: Any, settings: Any
) -> None:
    settings.KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC = 0
    connection = connect(msp_sandbox, settings)
    target = healthy_connector(msp_sandbox)
    late = START.replace(hour=23, minute=50)
    msp_sandbox.advance(late - START)
    sync(connection, msp_sandbox)
    connector = BackupConnector.objects.get(external_id=target.guid)
    evening = BackupJobDay.objects.get(connector=connector, day=START.date())
    assert not evening.closed
    # Just after midnight the day is not settled yet: today is read.
    msp_sandbox.advance(timedelta(minutes=20))
    sync(connection, msp_sandbox)
    tomorrow = (START + timedelta(days=1)).date()
    assert BackupJobDay.objects.filter(connector=connector, day=tomorrow).exists()
    assert not BackupJobDay.objects.get(connector=connector, day=START.date()).closed
    # An hour after midnight: yesterday one last time, with everything finished.
    msp_sandbox.advance(timedelta(minutes=55))
    sync(connection, msp_sandbox)
    closed = BackupJobDay.objects.get(connector=connector, day=START.date())
    assert closed.closed
    assert closed.in_progress == 0
    midnight = START.replace(hour=0).timestamp()
    counts = msp_sandbox.msp.job_counts(target, midnight, midnight + 86400, msp_sandbox.clock.now())
    assert closed.successful == counts["successful"]


def test_requests_grow_with_failures_not_with_connectors(msp_sandbox: Any, settings: Any) -> None:
    """A sync of an MSP with no failing job makes at most one request per account more
    than the sync before job data (children; connectors, summary per account; health per
    connector; the audit log)."""
    settings.KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC = 0
    msp = msp_sandbox.msp
    for account in msp.accounts:
        for connector in msp.connectors[account.guid]:
            msp.set_job_outcome(connector.guid, "successful", since=START - timedelta(days=30))
    connection = connect(msp_sandbox, settings)
    sync(connection, msp_sandbox)  # the first sync also reads every account's seats
    msp_sandbox.advance(timedelta(minutes=15))
    # Lists due: those whose hourly moment fell in these 15 minutes (about a quarter), and
    # an account without a connector (its list is read every sync).
    due = len(lists_due(connection, msp_sandbox.clock.now_datetime()))
    msp_sandbox.server.reset_request_log()
    run = sync(connection, msp_sandbox)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    routes = Counter(entry.route for entry in msp_sandbox.server.request_log)
    accounts = len(msp.accounts)
    connectors = BackupConnector.objects.filter(connection=connection, removed_at__isnull=True)
    before = 1 + 2 * accounts + connectors.count() + routes["audit"]
    total = sum(routes.values())
    print(f"requests by route: {dict(routes)}; total {total}, before job data {before}")
    assert total <= before + accounts
    # Exactly what a steady-state sync asks: per connection the child list, who am I, the
    # token list and the seat violations; per account the backup summary, every
    # connector's health in one call and one day's job counts; the connector list only of
    # an account without a connector (the others' stand between hourly readings while
    # the health shows no change); no job history (nothing failed), no seat usage (read
    # once a day), no per-connector health.
    empty = accounts - connectors.values("account_link").distinct().count()
    expected = {"children": 1, "whoami": 1, "tokens": 1, "seats": 1, "devices": due}
    expected |= {route: accounts - empty for route in ("health", "jobs")}
    expected |= {"summary": accounts}
    assert {route: routes[route] for route in expected} == expected
    assert run.counts["connector_lists_read"] == due
    assert routes["history"] == 0
    assert set(routes) <= {*expected, "audit", "status"}
    unhealthy = connectors.exclude(backup_status__health="healthy").count()
    assert routes["status"] <= unhealthy  # device status only where health is not healthy
    assert run.http_requests == total
    assert run.counts["health_fallbacks"] == 0

    # One connector starts failing: one more request, for its job history.
    target = healthy_connector(msp_sandbox)
    msp.set_job_outcome(target.guid, "unsuccessful", since=msp_sandbox.clock.now_datetime())
    ends = next_job_end(target, msp_sandbox.clock.now_datetime())
    msp_sandbox.advance(ends - msp_sandbox.clock.now_datetime() + timedelta(minutes=1))
    msp_sandbox.server.reset_request_log()
    sync(connection, msp_sandbox)
    routes_after = Counter(entry.route for entry in msp_sandbox.server.request_log)
    assert routes_after["jobs"] == accounts
    assert routes_after["history"] == 1


def test_an_account_whose_aggregated_health_fails_is_read_connector_by_connector(
    msp_sandbox: Any, settings: Any
) -> None:
    """Keepit's per-account health (C1) answers 404 for one account and something that is
    not its XML for another: those two accounts' connectors are asked one by one, the run
    says how many (`health_fallbacks`), and the statuses are those a normal read gives."""
    settings.KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC = 0
    connection = connect(msp_sandbox, settings)
    msp_sandbox.inject("404", "malformed", route="health")
    run = sync(connection, msp_sandbox)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    sizes = list(
        Counter(BackupConnector.objects.values_list("account_link_id", flat=True)).values()
    )
    two_accounts = {a + b for i, a in enumerate(sizes) for b in sizes[i + 1 :]}
    assert run.counts["health_fallbacks"] in two_accounts
    read = dict(BackupConnectorStatus.objects.values_list("connector__external_id", "health"))
    # The next sync reads every account whole: nothing differs, nothing falls back.
    msp_sandbox.advance(timedelta(minutes=15))
    again = sync(connection, msp_sandbox)
    assert again.counts["health_fallbacks"] == 0
    assert again.counts.get("status_changes", 0) == 0
    assert (
        dict(BackupConnectorStatus.objects.values_list("connector__external_id", "health")) == read
    )


def test_a_part_c_read_keepit_refuses_is_a_note_not_a_failed_sync(
    msp_sandbox: Any, settings: Any
) -> None:
    """A token without DevJobsCount, Expirations or Tokens (403) must not make every
    sync partial (and the connection Degraded): the run says what Keepit does not offer."""
    settings.KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC = 0
    connection = connect(msp_sandbox, settings)
    accounts = len(msp_sandbox.msp.accounts)
    msp_sandbox.inject(*["403"] * accounts, route="jobs")
    msp_sandbox.inject("403", route="seats")
    msp_sandbox.inject("403", route="tokens")
    run = sync(connection, msp_sandbox)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    assert run.failed_accounts == []
    for what in ("backup job counts", "seat-limit violations", "token list"):
        assert f"Keepit does not offer the {what} to these credentials" in run.notes
    assert not BackupJobDay.objects.exists()  # nothing read: "not read", never "no job"
    connection.refresh_from_db()
    assert connection.partial_runs_in_row == 0
    assert connection.credential_note == "Keepit does not show these credentials' tokens."
    # The next sync, with the permissions granted, reads them.
    msp_sandbox.advance(timedelta(minutes=15))
    run = sync(connection, msp_sandbox)
    assert run.notes == ""
    assert BackupJobDay.objects.exists()


def test_a_failure_whose_job_history_cannot_be_read_is_asked_again(
    msp_sandbox: Any, settings: Any
) -> None:
    settings.KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC = 0
    connection = connect(msp_sandbox, settings)
    backup_failed_rule(include_failed_status=False)
    target = healthy_connector(msp_sandbox)
    sync(connection, msp_sandbox)
    error = "The mailbox is over its size limit"
    msp_sandbox.msp.set_job_outcome(
        target.guid, "incomplete", since=msp_sandbox.clock.now_datetime(), error=error
    )
    ends = next_job_end(target, msp_sandbox.clock.now_datetime())
    msp_sandbox.advance(ends - msp_sandbox.clock.now_datetime() + timedelta(minutes=5))
    # Other connectors may fail in this sync too: every history read answers 503.
    msp_sandbox.inject(*["503"] * 40, route="history")
    seen_at = msp_sandbox.clock.now_datetime()
    sync(connection, msp_sandbox)
    msp_sandbox.server.clear_faults()
    connector = BackupConnector.objects.get(external_id=target.guid)
    day = BackupJobDay.objects.get(connector=connector, day=ends.date())
    assert (day.incomplete, day.last_error, day.last_failure_exact) == (1, "", False)
    assert day.last_failure_at == seen_at
    evaluate(now=seen_at, send=False)
    alert = Alert.objects.get(connector=connector, resolved_at__isnull=True)
    assert f"seen by the sync at {seen_at:%Y-%m-%dT%H:%M}+00:00" in alert.detail

    # The next sync asks the history again, though no new failure was counted.
    msp_sandbox.advance(timedelta(minutes=15))
    sync(connection, msp_sandbox)
    day.refresh_from_db()
    assert (day.last_error, day.last_failure_exact, day.last_failure_at) == (error, True, ends)
    evaluate(now=msp_sandbox.clock.now_datetime(), send=False)
    alert.refresh_from_db()
    assert error in alert.detail  # the words follow; no second message
    assert alert.events.filter(kind=AlertEvent.Kind.OPENED).count() == 1
    assert not alert.events.filter(kind=AlertEvent.Kind.REMINDER).exists()


def test_after_an_outage_the_days_missed_are_read_and_closed(
    msp_sandbox: Any, settings: Any
) -> None:
    settings.KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC = 3
    connection = connect(msp_sandbox, settings)
    target = healthy_connector(msp_sandbox)
    sync(connection, msp_sandbox)
    connector = BackupConnector.objects.get(external_id=target.guid)
    assert not BackupJobDay.objects.get(connector=connector, day=START.date()).closed
    # Three days without a sync (the worker was down).
    msp_sandbox.advance(timedelta(days=3, hours=2))
    sync(connection, msp_sandbox)
    days = {row.day: row for row in BackupJobDay.objects.filter(connector=connector)}
    today = msp_sandbox.clock.now_datetime().date()
    for back in (1, 2):
        assert (today - timedelta(days=back)) in days  # never read before: read now
    # The day read before the outage, never closed, is read again and closed.
    assert days[START.date()].closed


def test_a_connector_younger_than_its_account_has_no_days_before_it_existed(
    settings: Any,
) -> None:
    settings.KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC = 5
    msp_sandbox = make_sandbox(accounts=40, events_per_account_per_day=0, own_read_audit=False)
    try:
        connection = connect(msp_sandbox, settings)
        young = [
            c
            for a in msp_sandbox.msp.accounts
            for c in msp_sandbox.msp.connectors[a.guid]
            if c.scenario == "onboarding"
        ]
        assert young, "the sandbox MSP should have a connector added in the last two days"
        sync(connection, msp_sandbox)
    finally:
        msp_sandbox.stop()
    for simulated in young:
        created = datetime.fromtimestamp(simulated.created, START.tzinfo).date()
        connector = BackupConnector.objects.get(external_id=simulated.guid)
        days = set(BackupJobDay.objects.filter(connector=connector).values_list("day", flat=True))
        assert days
        assert min(days) >= created


def test_a_failed_job_alert_stays_open_past_the_lookback_until_a_complete_backup(
    msp_sandbox: Any, settings: Any
) -> None:
    settings.KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC = 0
    connection = connect(msp_sandbox, settings)
    backup_failed_rule(include_failed_status=False, lookback_hours=24)
    target = healthy_connector(msp_sandbox)
    sync(connection, msp_sandbox)
    now = msp_sandbox.clock.now_datetime()
    msp_sandbox.msp.set_job_outcome(target.guid, "unsuccessful", since=now)
    ends = next_job_end(target, now)
    # After that one failure every job is cancelled: no new failure, no complete backup.
    msp_sandbox.msp.set_job_outcome(target.guid, "cancelled", since=ends)
    msp_sandbox.advance(ends - now + timedelta(minutes=5))
    sync(connection, msp_sandbox)
    evaluate(now=msp_sandbox.clock.now_datetime(), send=False)
    connector = BackupConnector.objects.get(external_id=target.guid)
    alert = Alert.objects.get(connector=connector, resolved_at__isnull=True)
    # A day and a half later the failure is outside the lookback, but nothing succeeded.
    msp_sandbox.advance(timedelta(hours=36))
    sync(connection, msp_sandbox)
    evaluate(now=msp_sandbox.clock.now_datetime(), send=False)
    alert.refresh_from_db()
    assert alert.resolved_at is None
    # The next complete backup ends it.
    msp_sandbox.msp.set_job_outcome(
        target.guid, "successful", since=msp_sandbox.clock.now_datetime()
    )
    later = next_job_end(target, msp_sandbox.clock.now_datetime())
    msp_sandbox.advance(later - msp_sandbox.clock.now_datetime() + timedelta(minutes=5))
    sync(connection, msp_sandbox)
    evaluate(now=msp_sandbox.clock.now_datetime(), send=False)
    alert.refresh_from_db()
    assert alert.resolved_at is not None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("successful", "failed", "alerts"),
    [(9, 1, False), (8999, 1001, True), (899, 101, True), (10, 0, False)],
)
def test_the_success_rate_rule_fires_below_its_threshold_never_on_it(
    successful: int, failed: int, alerts: bool
) -> None:
    """90 % of finished jobs is on a 90 % rule (no alert); 89.99 % is under it, and the
    alert never reads "90.0 %" for it (rounded down)."""
    rule = AlertRule.objects.create(
        name="Success rate", kind=AlertRule.Kind.SUCCESS_RATE, recipients="noc@msp.example"
    )
    assert (rule.success_rate_days, rule.success_rate_percent) == (7, 90)
    connector = ConnectorFactory.create()
    JobDayFactory.create(
        connector=connector, day=NOW.date(), successful=successful, unsuccessful=failed
    )
    conditions = success_rate_conditions(rule, now=NOW).all()
    assert bool(conditions) is alerts
    if alerts:
        assert "90.0 %" not in conditions[0].summary
        assert "89.9 %" in conditions[0].summary


def test_rates_are_shown_rounded_down_to_one_decimal() -> None:
    assert format_rate(89.96) == "89.9 %"
    assert format_rate(90.0) == "90.0 %"
    assert format_rate(100.0) == "100.0 %"
    assert format_rate(0.04) == "0.0 %"
