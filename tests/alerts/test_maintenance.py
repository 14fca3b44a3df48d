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
        "[Vectis] Maintenance “Tenant migration” ended — 1 still open, 1 opened and resolved "
        "meanwhile"
    )
    body = summary.body
    assert body.index("STILL OPEN (1)") < body.index("Contoso Mail")
    assert body.index("OPENED AND RESOLVED MEANWHILE (1)") < body.index("Contoso Files")
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
            "[Vectis] Maintenance “Patch Sunday” ended — 1 still open, 0 opened and resolved "
            "meanwhile"
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
