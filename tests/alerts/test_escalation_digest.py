"""Escalation when nobody reacts, and a morning digest instead of a stream (issue "Alerts
where MSPs work"), over real HTTP to a local receiver and simulated days."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine

from alerts import lifecycle, services
from alerts.models import Alert, AlertEvent, NotificationChannel
from backups.models import BackupConnectorStatus
from tests.alerts.receivers import Receiver, start_receiver
from tests.alerts.test_channels import make_channel
from tests.factories import NOW, ConnectorFactory, CustomerFactory, StaleRuleFactory

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
