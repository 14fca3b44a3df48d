"""Triage where the alert is: the alert page the e-mail links to, and the alert list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from alerts.models import Alert, AlertEvent
from tests.alerts.test_alerts import evaluate
from tests.factories import NOW, ConnectorFactory, CustomerFactory, StaleRuleFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def open_alert() -> Alert:
    StaleRuleFactory.create()
    ConnectorFactory.create(
        customer=CustomerFactory.create(name="Contoso Ltd"),
        backup_status__last_success_at=NOW - timedelta(days=3),
    )
    return evaluate().opened[0]


def alert_page(client: Client, alert: Alert) -> str:
    return client.get(f"/admin/alerts/alert/{alert.pk}/change/").content.decode()


def triage(client: Client, alert: Alert, **data: str) -> str:
    response = client.post(f"/admin/alerts/alert/{alert.pk}/triage/", data, follow=True)
    assert response.status_code == 200
    return response.content.decode()


def test_the_alert_page_offers_acknowledge_snooze_and_says_why(
    client: Client, admin_user: User, open_alert: Alert
) -> None:
    client.force_login(admin_user)
    html = alert_page(client, open_alert)
    assert 'value="acknowledge"' in html
    assert 'type="datetime-local"' in html
    for quick in ("4 hours", "Until tomorrow 09:00", "1 week"):
        assert quick in html
    assert "Unsnooze" not in html  # nothing to unsnooze yet
    assert "No complete backup since 2026-11-23T12:00+00:00 (the rule allows 48 h)." in html


def test_acknowledge_from_the_alert_page(
    client: Client, admin_user: User, open_alert: Alert
) -> None:
    client.force_login(admin_user)
    html = triage(client, open_alert, triage="acknowledge", note="Called the customer")
    assert "Alert acknowledged: no more reminders." in html
    open_alert.refresh_from_db()
    assert open_alert.state == Alert.State.ACKNOWLEDGED
    assert (open_alert.acknowledged_by, open_alert.acknowledge_note) == (
        "admin",
        "Called the customer",
    )
    assert 'value="acknowledge"' not in alert_page(client, open_alert)


@pytest.mark.parametrize(
    ("quick", "until"),
    [
        ("4h", datetime(2026, 12, 1, 20, 30, tzinfo=UTC)),
        ("tomorrow", datetime(2026, 12, 2, 9, 0, tzinfo=UTC)),
        ("week", datetime(2026, 12, 8, 16, 30, tzinfo=UTC)),
    ],
)
def test_the_quick_snoozes(
    client: Client, admin_user: User, open_alert: Alert, quick: str, until: datetime
) -> None:
    client.force_login(admin_user)
    with time_machine.travel(datetime(2026, 12, 1, 16, 30, tzinfo=UTC), tick=False):
        html = triage(client, open_alert, triage="snooze", quick=quick, reason="Migration")
    open_alert.refresh_from_db()
    assert open_alert.snoozed_until == until
    assert open_alert.snooze_reason == "Migration"
    assert f"Snoozed until {until:%Y-%m-%d %H:%M} UTC." in html


def test_snooze_to_a_chosen_time_then_unsnooze(
    client: Client, admin_user: User, open_alert: Alert
) -> None:
    client.force_login(admin_user)
    chosen = (timezone.now() + timedelta(days=2)).replace(second=0, microsecond=0)
    triage(client, open_alert, triage="snooze", until=f"{chosen:%Y-%m-%dT%H:%M}", reason="x")
    open_alert.refresh_from_db()
    assert open_alert.snoozed_until == chosen
    html = alert_page(client, open_alert)
    assert "Unsnooze" in html
    triage(client, open_alert, triage="unsnooze")
    open_alert.refresh_from_db()
    assert open_alert.snoozed_until is None
    kinds = list(open_alert.events.values_list("kind", flat=True))
    assert kinds == [AlertEvent.Kind.OPENED, AlertEvent.Kind.SNOOZED, AlertEvent.Kind.UNSNOOZED]


def test_a_snooze_in_the_past_is_refused_with_a_sentence(
    client: Client, admin_user: User, open_alert: Alert
) -> None:
    client.force_login(admin_user)
    html = triage(client, open_alert, triage="snooze", until="2020-01-01T09:00", reason="x")
    assert "Snooze until: Choose a time in the future." in html
    open_alert.refresh_from_db()
    assert open_alert.snoozed_until is None


def test_someone_who_may_only_look_sees_no_buttons_and_cannot_post(
    client: Client, open_alert: Alert
) -> None:
    viewer = User.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_alert"))
    client.force_login(viewer)
    html = alert_page(client, open_alert)
    assert "Why:" in html
    assert 'value="acknowledge"' not in html
    response = client.post(
        f"/admin/alerts/alert/{open_alert.pk}/triage/", {"triage": "acknowledge"}
    )
    assert response.status_code == 403
    open_alert.refresh_from_db()
    assert open_alert.state == Alert.State.OPEN


def test_the_alert_list_shows_open_alerts_by_default_with_readable_columns(
    client: Client, admin_user: User, open_alert: Alert
) -> None:
    Alert.objects.filter(pk=open_alert.pk).update(
        resolved_at=NOW, state=Alert.State.RESOLVED, summary="Old and resolved"
    )
    StaleRuleFactory.create(name="Second")
    evaluate(NOW + timedelta(minutes=5))
    client.force_login(admin_user)
    html = client.get("/admin/alerts/alert/").content.decode()
    assert "Old and resolved" not in html
    assert "Contoso Ltd: Microsoft 365" in html
    headers = html.split("<thead>")[1].split("</thead>")[0]
    assert headers.count(">Kind<") <= 1
    assert "Connector kind" in headers
    assert "#result_list td.field-summary { min-width:320px; }" in html
    resolved = client.get("/admin/alerts/alert/?status=resolved").content.decode()
    assert "Old and resolved" in resolved
    everything = client.get("/admin/alerts/alert/?status=all").content.decode()
    assert "Old and resolved" in everything
    assert "Contoso Ltd: Microsoft 365" in everything
