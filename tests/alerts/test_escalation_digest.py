"""Escalation when nobody reacts, and a morning digest instead of a stream (issue "Alerts
where MSPs work"), over real HTTP to a local receiver and simulated days."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine
from django.core import mail

from alerts import lifecycle, services
from alerts.models import Alert, AlertEvent, MaintenanceWindow, NotificationChannel
from backups.models import BackupConnectorStatus
from integrations.models import Connection
from tests.alerts.receivers import Receiver, start_receiver
from tests.alerts.test_channels import make_channel
from tests.factories import (
    NOW,
    ConnectionFactory,
    ConnectorFactory,
    CustomerFactory,
    StaleRuleFactory,
)

pytestmark = pytest.mark.django_db
MINUTE = timedelta(minutes=1)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = start_receiver()
    yield running
    running.stop()


def test_an_alert_nobody_acknowledges_is_escalated_once(receiver: Receiver) -> None:
    oncall = make_channel(NotificationChannel.Kind.WEBHOOK, f"{receiver.base}/oncall")
    rule = StaleRuleFactory.create(
        recipients="noc@msp.example", escalation_channel=oncall, escalation_minutes=30
    )
    customer = CustomerFactory.create(name="Contoso Ltd")
    for name in ("Mail", "Files"):
        ConnectorFactory.create(
            customer=customer,
            name=f"Contoso {name}",
            backup_status__last_success_at=NOW - timedelta(days=3),
        )
    services.evaluate(now=NOW)
    handled = Alert.objects.get(connector__name="Contoso Files")
    lifecycle.acknowledge([handled.pk], by="tech", note="on it", now=NOW + 10 * MINUTE)
    services.evaluate(now=NOW + 29 * MINUTE)
    assert receiver.requests == []
    services.evaluate(now=NOW + 31 * MINUTE)
    services.evaluate(now=NOW + 90 * MINUTE)
    (request,) = receiver.requests
    body = request.json()
    assert body["type"] == "escalation"
    assert body["subject"] == (
        f"[Vectis] Escalated: 1 alert of “{rule.name}” open and unacknowledged for 30 minutes"
    )
    assert [(a["connector"]["name"], a["event"]) for a in body["alerts"]] == [
        ("Contoso Mail", "escalated")
    ]
    escalated = Alert.objects.get(connector__name="Contoso Mail")
    assert escalated.escalated_at == NOW + 31 * MINUTE
    assert escalated.events.filter(kind=AlertEvent.Kind.ESCALATED).count() == 1
    assert Alert.objects.get(pk=handled.pk).escalated_at is None


def test_the_morning_digest_comes_at_local_time_across_the_change_to_winter_time(
    receiver: Receiver,
) -> None:
    """08:00 in Copenhagen: 06:00 UTC on Saturday 24 October (summer time), 07:00 UTC on
    Sunday 25 and Monday 26 (winter time). A day with nothing to say sends nothing."""
    channel = make_channel(
        NotificationChannel.Kind.WEBHOOK,
        f"{receiver.base}/digest",
        digest_enabled=True,
        digest_time=time(8, 0),
        digest_timezone="Europe/Copenhagen",
    )
    rule = StaleRuleFactory.create(recipients="")
    rule.channels.set([channel])
    connector = ConnectorFactory.create(
        customer=CustomerFactory.create(name="Contoso Ltd"), name="Contoso Mail"
    )
    status = BackupConnectorStatus.objects.filter(connector=connector)
    start = datetime(2026, 10, 23, 12, 0, tzinfo=UTC)
    digests: list[tuple[datetime, dict[str, object]]] = []
    with time_machine.travel(start, tick=False) as clock:
        for hour in range(4 * 24):
            now = start + timedelta(hours=hour)
            clock.move_to(now)
            # Stale from Friday evening until Sunday noon; backed up every hour otherwise
            # (so Tuesday's digest has nothing to say).
            if (
                datetime(2026, 10, 23, 18, tzinfo=UTC)
                <= now
                < datetime(2026, 10, 25, 12, tzinfo=UTC)
            ):
                if now == datetime(2026, 10, 23, 18, tzinfo=UTC):
                    status.update(last_success_at=now - timedelta(days=3))
            else:
                status.update(last_success_at=now)
            before = len(receiver.requests)
            services.evaluate(now=now)
            for request in receiver.requests[before:]:
                body = request.json()
                if body["type"] == "digest":
                    digests.append((now, body))
    assert [when for when, _ in digests] == [
        datetime(2026, 10, 24, 6, 0, tzinfo=UTC),
        datetime(2026, 10, 25, 7, 0, tzinfo=UTC),
        datetime(2026, 10, 26, 7, 0, tzinfo=UTC),
    ]
    saturday, sunday, monday = (body for _, body in digests)
    assert saturday["subject"] == "[Vectis] Daily digest — 1 open, 1 change"
    assert sunday["subject"] == "[Vectis] Daily digest — 1 open, 0 changes"
    assert monday["subject"] == "[Vectis] Daily digest — 0 open, 1 change"  # resolved


def test_a_digest_switched_on_waits_for_its_time_instead_of_sending_at_once(
    receiver: Receiver,
) -> None:
    """Switched on at 12:00 UTC with an alert open: the first digest is the next 08:00."""
    channel = make_channel(
        NotificationChannel.Kind.WEBHOOK,
        f"{receiver.base}/digest",
        digest_enabled=True,
        digest_time=time(8, 0),
        digest_timezone="UTC",
    )
    rule = StaleRuleFactory.create(recipients="")
    rule.channels.set([channel])
    ConnectorFactory.create(backup_status__last_success_at=NOW - timedelta(days=3))
    digests = []
    for hours in range(0, 24):
        now = NOW + timedelta(hours=hours)
        before = len(receiver.requests)
        services.evaluate(now=now)
        digests += [now for r in receiver.requests[before:] if r.json()["type"] == "digest"]
    assert digests == [datetime(2026, 11, 27, 8, 0, tzinfo=UTC)]


def test_simulated_days_a_broken_sync_under_a_window_across_the_change_to_winter_time(
    receiver: Receiver,
) -> None:
    """Hour by hour from Friday 23 to Monday 26 October 2026 (Copenhagen leaves summer
    time in the night to Sunday). The sync breaks Saturday 18:00 UTC and comes back
    Sunday 06:00; the connectors go stale behind it; a weekly window "Sundays 02:00 for
    3 h, Europe/Copenhagen" covers the connection (00:00 to 03:00 UTC that night).

    The team hears: the sync alert once, its escalation once (the rule's channel, three
    hours after it was told), the window's summary, and the sync's recovery — never the
    three connectors, which recover with their sync."""
    oncall = make_channel(NotificationChannel.Kind.WEBHOOK, f"{receiver.base}/oncall")
    StaleRuleFactory.create(
        recipients="noc@msp.example",
        threshold_hours=6,
        escalation_channel=oncall,
        escalation_minutes=180,
    )
    connection = ConnectionFactory.create(enabled=True)
    customer = CustomerFactory.create(name="Contoso Ltd")
    for name in ("Mail", "Files", "Teams"):
        ConnectorFactory.create(connection=connection, customer=customer, name=f"Contoso {name}")
    MaintenanceWindow.objects.create(
        reason="Patch Sunday",
        connection=connection,
        repeat=MaintenanceWindow.Repeat.WEEKLY,
        weekdays=[7],
        start_time=time(2, 0),
        duration_minutes=180,
        timezone="Europe/Copenhagen",
    )
    MaintenanceWindow.objects.update(created_at=datetime(2026, 10, 1, tzinfo=UTC))
    broken_from = datetime(2026, 10, 24, 18, tzinfo=UTC)
    back_at = datetime(2026, 10, 25, 6, tzinfo=UTC)
    start = datetime(2026, 10, 23, 12, tzinfo=UTC)
    told: list[tuple[datetime, str, str]] = []
    with time_machine.travel(start, tick=False) as clock:
        for hour in range(3 * 24):
            now = start + timedelta(hours=hour)
            clock.move_to(now)
            if not broken_from < now < back_at:  # a working sync brings fresh status
                Connection.objects.filter(pk=connection.pk).update(last_success_at=now)
                BackupConnectorStatus.objects.update(last_success_at=now)
            mails, posts = len(mail.outbox), len(receiver.requests)
            services.evaluate(now=now)
            told += [(now, m.to[0], str(m.subject)) for m in mail.outbox[mails:]]
            told += [(now, "oncall", r.json()["subject"]) for r in receiver.requests[posts:]]
    assert told == [
        (datetime(2026, 10, 24, 20, tzinfo=UTC), "noc@msp.example",
         "[Vectis] 1 sync stale — Vectis: Keepit US"),
        (datetime(2026, 10, 24, 23, tzinfo=UTC), "oncall",
         "[Vectis] Escalated: 1 alert open and unacknowledged for 180 minutes"),
        (datetime(2026, 10, 25, 3, tzinfo=UTC), "noc@msp.example",
         "[Vectis] Maintenance “Patch Sunday” ended — 1 still open, 0 resolved meanwhile"),
        (datetime(2026, 10, 25, 6, tzinfo=UTC), "noc@msp.example",
         "[Vectis] 1 resolved — Vectis: Keepit US"),
    ]  # fmt: skip
    children = Alert.objects.filter(kind=Alert.Kind.BACKUP_STALE)
    assert children.count() == 3  # they opened (Sunday 01:00 UTC) and resolved, untold
    assert all(child.resolved_at == back_at for child in children)
    assert not AlertEvent.objects.filter(notified_at__isnull=True).exists()


def test_escalation_counts_from_when_the_team_was_told_and_says_what_and_how_to_act(
    receiver: Receiver,
) -> None:
    """An alert that opened during a window is told by the window's summary; its
    escalation comes its delay after that, as a message that names it and carries the
    Acknowledge and Snooze links. A snoozed alert is not escalated."""
    oncall = make_channel(
        NotificationChannel.Kind.EMAIL, "", name="On-call", addresses="oncall@msp.example"
    )
    StaleRuleFactory.create(
        recipients="noc@msp.example", escalation_channel=oncall, escalation_minutes=60
    )
    customer = CustomerFactory.create(name="Contoso Ltd")
    for name in ("Mail", "Files"):
        ConnectorFactory.create(
            customer=customer,
            name=f"Contoso {name}",
            backup_status__last_success_at=NOW - timedelta(days=3),
        )
    MaintenanceWindow.objects.create(
        reason="Migration", customer=customer, starts_at=NOW - MINUTE, ends_at=NOW + 120 * MINUTE
    )
    MaintenanceWindow.objects.update(created_at=NOW - timedelta(days=1))
    services.evaluate(now=NOW)
    snoozed = Alert.objects.get(connector__name="Contoso Files")
    lifecycle.snooze(
        [snoozed.pk], until=NOW + timedelta(days=1), reason="vendor ticket", by="tech", now=NOW
    )
    services.evaluate(now=NOW + 121 * MINUTE)  # the summary tells the team now
    assert [m.to for m in mail.outbox] == [["noc@msp.example"]]
    services.evaluate(now=NOW + 180 * MINUTE)
    assert len(mail.outbox) == 1  # an hour after the summary, not after the opening
    services.evaluate(now=NOW + 182 * MINUTE)
    (escalation,) = mail.outbox[1:]
    assert escalation.to == ["oncall@msp.example"]
    assert escalation.subject == (
        "[Vectis] Escalated: 1 alert of “Stale backups” open and unacknowledged for 60 minutes"
    )
    assert "Contoso Mail" in escalation.body
    assert "Contoso Files" not in escalation.body  # snoozed
    assert escalation.body.count("/alerts/act/") == 2  # acknowledge, snooze
    assert Alert.objects.get(pk=snoozed.pk).escalated_at is None


def test_a_digest_only_channel_hears_nothing_until_its_digest_which_leaves_out_held_alerts(
    receiver: Receiver,
) -> None:
    """A quiet channel: no stream, one digest at 08:00. An alert held by a running
    maintenance window is not in it (its window's summary will tell it)."""
    channel = make_channel(
        NotificationChannel.Kind.WEBHOOK,
        f"{receiver.base}/digest",
        digest_enabled=True,
        digest_time=time(8, 0),
        digest_timezone="UTC",
        digest_only=True,
    )
    StaleRuleFactory.create(recipients="noc@msp.example").channels.set([channel])
    contoso = CustomerFactory.create(name="Contoso Ltd")
    fabrikam = CustomerFactory.create(name="Fabrikam")
    for customer in (contoso, fabrikam):
        ConnectorFactory.create(
            customer=customer,
            name=f"{customer.name} Mail",
            backup_status__last_success_at=NOW - timedelta(days=3),
        )
    MaintenanceWindow.objects.create(
        reason="Tenant migration",
        customer=fabrikam,
        starts_at=NOW - timedelta(hours=1),
        ends_at=NOW + timedelta(days=2),
    )
    told = []
    for hours in range(0, 24):
        now = NOW + timedelta(hours=hours)
        before = len(receiver.requests)
        services.evaluate(now=now)
        told += [(now, r.json()) for r in receiver.requests[before:]]
    # The plain e-mail recipients are streamed to as before (Contoso only: Fabrikam is held).
    assert [m.subject for m in mail.outbox] == [
        "[Vectis] 1 backup stale — Contoso Ltd: Contoso Ltd Mail"
    ]
    ((when, digest),) = told
    assert when == datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
    assert digest["type"] == "digest"
    assert [a["customer"]["name"] for a in digest["alerts"] if a["event"] == "open"] == [
        "Contoso Ltd"
    ]
    assert "Fabrikam" not in digest["text"]
