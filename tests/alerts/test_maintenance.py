"""Maintenance windows: evaluation goes on, messages wait, one summary when it ends
(issue "Alerts where MSPs work")."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine
from django.core import mail
from django.test import Client

from alerts import maintenance, services
from alerts.models import Alert, AlertEvent, MaintenanceWindow
from backups.models import BackupConnectorStatus
from tests.factories import NOW, ConnectorFactory, CustomerFactory, StaleRuleFactory

pytestmark = pytest.mark.django_db
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def window(**fields: object) -> MaintenanceWindow:
    made = MaintenanceWindow.objects.create(**fields)
    # As if it had been set up beforehand (occurrences before a window existed are not
    # summarized).
    MaintenanceWindow.objects.filter(pk=made.pk).update(created_at=NOW - timedelta(days=30))
    made.refresh_from_db()
    return made


def test_a_window_holds_messages_and_one_summary_tells_what_happened() -> None:
    StaleRuleFactory.create(recipients="noc@msp.example")
    contoso = CustomerFactory.create(name="Contoso Ltd")
    fabrikam = CustomerFactory.create(name="Fabrikam")
    fresh = NOW + HOUR - timedelta(hours=2)
    broken = ConnectorFactory.create(
        customer=contoso, name="Contoso Mail", backup_status__last_success_at=fresh
    )
    flaky = ConnectorFactory.create(
        customer=contoso, name="Contoso Files", backup_status__last_success_at=fresh
    )
    elsewhere = ConnectorFactory.create(
        customer=fabrikam, name="Fabrikam Mail", backup_status__last_success_at=fresh
    )
    window(reason="Tenant migration", customer=contoso, starts_at=NOW, ends_at=NOW + 6 * HOUR)
    old = NOW - timedelta(days=3)
    BackupConnectorStatus.objects.filter(connector__in=[broken, flaky, elsewhere]).update(
        last_success_at=old
    )
    # Inside the window: two alerts open for Contoso, one for Fabrikam.
    services.evaluate(now=NOW + HOUR)
    assert Alert.objects.filter(resolved_at__isnull=True).count() == 3
    assert [m.subject for m in mail.outbox] == ["[Vectis] 1 backup stale — Fabrikam: Fabrikam Mail"]
    # One of Contoso's recovers inside the window: resolved, still nothing sent.
    BackupConnectorStatus.objects.filter(connector=flaky).update(last_success_at=NOW + 2 * HOUR)
    services.evaluate(now=NOW + 3 * HOUR)
    assert Alert.objects.get(connector=flaky).resolved_at is not None
    assert len(mail.outbox) == 1
    # The window ends: one summary, with what is open and what came and went.
    services.evaluate(now=NOW + 7 * HOUR)
    assert len(mail.outbox) == 2
    summary = mail.outbox[1]
    assert summary.subject == (
        "[Vectis] Maintenance “Tenant migration” ended — 1 still open, 1 resolved meanwhile"
    )
    body = summary.body
    assert body.index("STILL OPEN (1)") < body.index("Contoso Mail")
    assert body.index("RESOLVED MEANWHILE (1)") < body.index("Contoso Files")
    # The held entries are told now: nothing comes again later.
    assert not AlertEvent.objects.filter(notified_at__isnull=True, kind="opened").exists()
    services.evaluate(now=NOW + 8 * HOUR)
    assert len(mail.outbox) == 2


def test_a_weekly_window_keeps_local_time_across_the_daylight_saving_change() -> None:
    """Sundays 02:00 for 3 hours in Copenhagen: summer time ends on Sunday 25 October
    2026, so the window starts at 00:00 UTC the week before and at 01:00 UTC after."""
    weekly = window(
        reason="Patch Sunday",
        customer=CustomerFactory.create(),
        repeat=MaintenanceWindow.Repeat.WEEKLY,
        weekdays=[7],
        start_time=time(2, 0),
        duration_minutes=180,
        timezone="Europe/Copenhagen",
    )

    def at(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    assert maintenance.current(weekly, at("2026-10-18T00:00:00")) == (
        at("2026-10-18T00:00:00"),
        at("2026-10-18T03:00:00"),
    )
    assert maintenance.current(weekly, at("2026-10-17T23:59:00")) is None
    assert maintenance.current(weekly, at("2026-11-01T00:30:00")) is None
    assert maintenance.current(weekly, at("2026-11-01T01:00:00")) == (
        at("2026-11-01T01:00:00"),
        at("2026-11-01T04:00:00"),
    )
    assert maintenance.current(weekly, at("2026-11-01T04:00:00")) is None
    assert maintenance.current(weekly, at("2026-11-04T02:00:00")) is None  # a Wednesday


def test_simulated_days_of_a_weekly_window_hold_and_summarize_each_occurrence() -> None:
    """Time moves an hour at a time through two weeks (over the change to winter time):
    every Sunday the stale alert opening inside the window is held and summarized once."""
    StaleRuleFactory.create(recipients="noc@msp.example")
    contoso = CustomerFactory.create(name="Contoso Ltd")
    connector = ConnectorFactory.create(customer=contoso, name="Contoso Mail")
    window(
        reason="Patch Sunday",
        customer=contoso,
        repeat=MaintenanceWindow.Repeat.WEEKLY,
        weekdays=[7],
        start_time=time(2, 0),
        duration_minutes=180,
        timezone="Europe/Copenhagen",
    )
    start = datetime(2026, 10, 24, 12, 0, tzinfo=UTC)  # Saturday
    status = BackupConnectorStatus.objects.filter(connector=connector)
    subjects_by_hour: dict[datetime, list[str]] = {}
    with time_machine.travel(start, tick=False) as clock:
        for hour in range(8 * 24 + 2):
            now = start + hour * HOUR
            clock.move_to(now)
            # Backups run every hour, except on Sunday mornings: at 02:00 UTC (inside both
            # windows) the last one looks three days old, until noon.
            if now.weekday() == 6 and now.hour == 2:
                status.update(last_success_at=now - timedelta(days=3))
            elif not (now.weekday() == 6 and 2 <= now.hour < 12):
                status.update(last_success_at=now)
            before = len(mail.outbox)
            services.evaluate(now=now)
            if len(mail.outbox) > before:
                subjects_by_hour[now] = [str(m.subject) for m in mail.outbox[before:]]
    summaries = {
        when: subjects
        for when, subjects in subjects_by_hour.items()
        if any("Maintenance" in s for s in subjects)
    }
    # 25 October, the night of the change: 02:00 happens twice; the window starts at the
    # first (02:00 summer time, 00:00 UTC) and lasts 3 real hours, to 03:00 UTC. On
    # 1 November: 02:00 winter time, 01:00 to 04:00 UTC. Each summary comes with the
    # first evaluation after the end.
    assert sorted(summaries) == [
        datetime(2026, 10, 25, 3, 0, tzinfo=UTC),
        datetime(2026, 11, 1, 4, 0, tzinfo=UTC),
    ]
    for subjects in summaries.values():
        assert subjects == [
            "[Vectis] Maintenance “Patch Sunday” ended — 1 still open, 0 resolved meanwhile"
        ]
    # Nothing else was sent while a window was on; the resolutions afterwards were.
    for when, subjects in subjects_by_hour.items():
        if when not in summaries:
            assert all("resolved" in s for s in subjects), (when, subjects)


def test_the_dashboard_marks_what_a_window_covers(admin_client: Client) -> None:
    contoso = CustomerFactory.create(name="Contoso Ltd")
    ConnectorFactory.create(customer=contoso, name="Contoso Mail", backup_status__status="failed")
    ConnectorFactory.create(name="Other", backup_status__status="failed")
    now = datetime.now(UTC)
    window(reason="Migration", customer=contoso, starts_at=now - HOUR, ends_at=now + HOUR)
    html = admin_client.get("/admin/backups/").content.decode()
    assert html.count('data-testid="in-maintenance"') == 1
    row = html[html.index("Contoso Mail") - 1500 : html.index("Contoso Mail")]
    assert "In maintenance" in row


def test_a_resolution_inside_a_window_is_never_swallowed() -> None:
    """An alert told before the window that resolves during it, and (on a rule without
    resolved notices) one that opened and resolved inside it: both are in the summary."""
    told_rule = StaleRuleFactory.create(name="Stale", recipients="noc@msp.example")
    quiet_rule = StaleRuleFactory.create(
        name="Quiet", recipients="owner@msp.example", send_resolved=False
    )
    contoso = CustomerFactory.create(name="Contoso Ltd")
    fabrikam = CustomerFactory.create(name="Fabrikam")
    quiet_rule.customers.set([fabrikam])
    told_rule.customers.set([contoso])
    early = ConnectorFactory.create(
        customer=contoso, name="Contoso Mail", backup_status__last_success_at=NOW - 3 * DAY
    )
    services.evaluate(now=NOW)  # told before the window
    assert [m.subject for m in mail.outbox] == [
        "[Vectis] 1 backup stale — Contoso Ltd: Contoso Mail"
    ]
    window(
        reason="Upgrade", connection=early.connection, starts_at=NOW + HOUR, ends_at=NOW + 5 * HOUR
    )
    late = ConnectorFactory.create(
        customer=fabrikam, name="Fabrikam Mail", backup_status__last_success_at=NOW - 3 * DAY
    )
    services.evaluate(now=NOW + 2 * HOUR)  # Fabrikam opens inside the window
    BackupConnectorStatus.objects.filter(connector__in=[early, late]).update(
        last_success_at=NOW + 2 * HOUR
    )
    services.evaluate(now=NOW + 3 * HOUR)  # both resolve inside it
    assert len(mail.outbox) == 1
    services.evaluate(now=NOW + 6 * HOUR)
    summaries = {m.to[0]: m for m in mail.outbox[1:]}
    assert set(summaries) == {"noc@msp.example", "owner@msp.example"}
    assert summaries["noc@msp.example"].subject.endswith("0 still open, 1 resolved meanwhile")
    assert "Contoso Mail" in summaries["noc@msp.example"].body
    # The quiet rule sends no resolved notices, but its recipients never heard of the
    # opening either: the summary tells them it came and went.
    assert "Fabrikam Mail" in summaries["owner@msp.example"].body
    assert not AlertEvent.objects.filter(notified_at__isnull=True).exists()


def test_a_summary_leaves_children_of_an_open_parent_and_other_windows_alone() -> None:
    """The connection's sync is stale (the parent alert) when a customer's window ends:
    the child alerts under it keep waiting for their parent, not for the summary."""
    StaleRuleFactory.create(recipients="noc@msp.example")
    contoso = CustomerFactory.create(name="Contoso Ltd")
    connector = ConnectorFactory.create(
        customer=contoso, name="Contoso Mail", backup_status__last_success_at=NOW - 3 * DAY
    )
    connection = connector.connection
    connection.enabled = True
    connection.last_success_at = NOW - 3 * HOUR
    connection.save()
    window(reason="Tenant work", customer=contoso, starts_at=NOW - HOUR, ends_at=NOW + HOUR)
    services.evaluate(now=NOW)
    child = Alert.objects.get(connector=connector)
    assert child.parent is not None
    assert child.parent.kind == Alert.Kind.SYNC_STALE
    assert [m.subject for m in mail.outbox] == [
        "[Vectis] 1 sync stale — Vectis: Keepit US"
    ]  # the connection's alert: not the customer's window
    services.evaluate(now=NOW + 2 * HOUR)  # the window has ended; the parent is open
    assert len(mail.outbox) == 1
    assert child.events.get(kind="opened").notified_at is None  # still waiting
