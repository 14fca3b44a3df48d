"""Screens that tell the truth: exclusions, the dashboard and the alerts agree, freshness,
history that cannot be edited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client, TestCase
from django.utils import timezone
from pytest_django.fixtures import Settings

from alerts import services as alert_services
from alerts.models import Alert, AlertEvent, AlertNotification
from backups.models import AccountLink, BackupAuditEvent, BackupConnector, BackupStatus
from customers.models import Customer
from integrations.models import Connection, SyncRun
from keepit_sandbox import KeepitSandbox
from tests.conftest import START, sandbox_connection, sync
from tests.factories import FailedRuleFactory, StaleRuleFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client: Client, admin_user: User) -> Client:
    client.force_login(admin_user)
    return client


@pytest.fixture
def synced(sandbox: KeepitSandbox, settings: Settings) -> KeepitSandbox:
    settings.KEEPIT_BASE_URL_TEMPLATE = sandbox.base_url_template
    connection = sandbox_connection(sandbox)
    assert sync(connection, sandbox).outcome == "succeeded"
    StaleRuleFactory.create(name="Stale", recipients="t@msp.example")
    FailedRuleFactory.create(name="Failed", recipients="t@msp.example")
    alert_services.evaluate(now=START)
    mail.outbox.clear()
    return sandbox


def attention_rows(html: str) -> str:
    return html.split('id="attention-list"')[1].split("</table>")[0]


# --- excluded means excluded ----------------------------------------------------------------


def test_an_excluded_account_leaves_the_dashboard_raises_nothing_and_its_alerts_end_quietly(
    admin_client: Client, synced: KeepitSandbox
) -> None:
    link = (
        AccountLink.objects.filter(
            connectors__alerts__isnull=False, connectors__alerts__resolved_at__isnull=True
        )
        .distinct()
        .first()
    )
    assert link is not None
    connectors = list(BackupConnector.objects.filter(account_link=link))
    open_before = Alert.objects.filter(connector__in=connectors, resolved_at__isnull=True)
    assert open_before.exists()
    alert_ids = list(open_before.values_list("pk", flat=True))
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = admin_client.post(
            "/admin/backups/accountlink/?review=linked",
            {"action": "exclude_action", "_selected_action": [link.pk]},
        )
    assert response.status_code == 302
    # Its alerts ended at once, with a note and no "resolved" message.
    for alert in Alert.objects.filter(pk__in=alert_ids):
        assert alert.resolved_at is not None
        event = alert.events.get(kind=AlertEvent.Kind.RESOLVED)
        assert event.notified_at is not None
        assert "excluded" in event.note
        assert event.by == "admin"
    alert_services.evaluate(now=START + timedelta(minutes=5))
    assert mail.outbox == []
    assert not Alert.objects.filter(connector__in=connectors, resolved_at__isnull=True).exists()
    html = admin_client.get("/admin/backups/?status=all").content.decode()
    for connector in connectors:
        assert f">{connector.name}<" not in attention_rows(html)
    # Back in: the next evaluation alerts again.
    link.refresh_from_db()
    AccountLink.objects.filter(pk=link.pk).update(state=AccountLink.State.LINKED)
    reopened = alert_services.evaluate(now=START + timedelta(minutes=10)).opened
    assert {a.connector_id for a in reopened} & {c.pk for c in connectors}


# --- dashboard and alerts agree ------------------------------------------------------------


def test_every_connector_with_an_open_alert_is_in_needs_attention(
    admin_client: Client, synced: KeepitSandbox
) -> None:
    html = attention_rows(admin_client.get("/admin/backups/").content.decode())
    with_alerts = BackupConnector.objects.filter(
        alerts__isnull=False, alerts__resolved_at__isnull=True
    ).distinct()
    ok_with_alert = with_alerts.filter(backup_status__status=BackupStatus.OK)
    assert ok_with_alert.exists()
    for connector in with_alerts:
        assert connector.name.replace("'", "&#x27;").replace("&", "&amp;") in html


def test_the_tiles_and_the_chart_follow_the_filters_and_say_so(
    admin_client: Client, synced: KeepitSandbox
) -> None:
    fleet = admin_client.get("/admin/backups/").content.decode()
    assert "Counts fleet-wide." in fleet
    customer = Customer.objects.filter(connectors__isnull=False).first()
    assert customer is not None
    html = admin_client.get(f"/admin/backups/?customer={customer.pk}&status=all").content.decode()
    assert "Counts matching the filters below." in html
    connectors = BackupConnector.objects.filter(customer=customer, removed_at=None)
    total = sum(
        int(html.split(f'data-testid="count-{status}">')[1].split("<")[0])
        for status in ("failed", "warning", "unknown", "onboarding", "ok")
    )
    assert total == connectors.count()
    alerts = Alert.objects.filter(connector__customer=customer, resolved_at__isnull=True)
    assert f'data-testid="count-alerts">{alerts.count()}<' in html
    assert f"{connectors.count()} connectors matching the filters below" in html


def test_the_customer_drill_down_lists_every_status_and_the_filter_says_so(
    admin_client: Client, synced: KeepitSandbox
) -> None:
    customer = Customer.objects.filter(connectors__isnull=False).first()
    assert customer is not None
    page = admin_client.get(f"/admin/customers/customer/{customer.pk}/change/").content.decode()
    link = page.split('id="customer-dashboard-link"')[0].rsplit('href="', 1)[1].split('"')[0]
    html = admin_client.get(link.replace("&amp;", "&")).content.decode()
    rows = attention_rows(html)
    assert rows.count("<tr data-status=") == customer.connectors.filter(removed_at=None).count()
    assert '<option value="all" selected>All statuses</option>' in html


# --- freshness is visible -------------------------------------------------------------------


def test_the_home_dashboard_and_customer_page_say_data_as_of_per_connection(
    admin_client: Client, synced: KeepitSandbox
) -> None:
    connection = Connection.objects.get()
    assert connection.last_success_at is not None
    stamp = f"{connection.last_success_at:%Y-%m-%d %H:%M} UTC"
    customer = Customer.objects.filter(account_links__isnull=False).first()
    assert customer is not None
    for url in ("/admin/", "/admin/backups/", f"/admin/customers/customer/{customer.pk}/change/"):
        html = " ".join(admin_client.get(url).content.decode().split())
        assert "Sandbox</a> (Keepit): data as of <time" in html, url
        assert stamp in html, url


def test_a_failing_connection_is_shown_on_the_home_page(
    admin_client: Client, synced: KeepitSandbox
) -> None:
    now = timezone.now()
    Connection.objects.update(last_error="Keepit refused the credentials", last_error_at=now)
    html = admin_client.get("/admin/").content.decode()
    assert 'data-state="Failing"' in html
    assert "Keepit refused the credentials" in html


def test_an_empty_product_says_connect_keepit_to_start(admin_client: Client) -> None:
    html = admin_client.get("/admin/").content.decode()
    panel = html.split('data-testid="connect-vendor"')[1].split("</p>")[0]
    assert "Connect Keepit to start:" in panel
    assert '<a class="button" href="/admin/keepit/keepitconnection/add/">Configure</a>' in panel
    dashboard = admin_client.get("/admin/backups/").content.decode()
    rows = attention_rows(dashboard)
    assert 'No backup data yet: <a href="/admin/keepit/keepitconnection/add/">connect' in rows
    assert "Nothing needs attention" not in dashboard


def test_a_customer_page_says_when_its_account_was_not_read_in_the_last_sync(
    admin_client: Client, synced: KeepitSandbox
) -> None:
    link = AccountLink.objects.exclude(customer=None).first()
    assert link is not None
    assert link.customer is not None
    url = f"/admin/customers/customer/{link.customer.pk}/change/"
    assert 'data-testid="unread-account"' not in admin_client.get(url).content.decode()
    synced.server.failing_accounts.add(link.external_id)
    connection = Connection.objects.get()
    assert sync(connection, synced).outcome == "partial"
    assert 'data-testid="unread-account"' in admin_client.get(url).content.decode()


# --- history is read-only -------------------------------------------------------------------


def test_history_cannot_be_edited_or_deleted_in_the_admin_even_by_a_superuser(
    admin_client: Client, synced: KeepitSandbox
) -> None:
    alert_services.send_due(now=START)
    run = SyncRun.objects.get()
    connector = BackupConnector.objects.first()
    event = BackupAuditEvent.objects.first()
    alert = Alert.objects.first()
    notification = AlertNotification.objects.first()
    assert connector is not None
    assert event is not None
    assert alert is not None
    assert notification is not None
    objects = [
        ("integrations/syncrun", run.pk),
        ("backups/backupconnector", connector.pk),
        ("backups/backupconnectorstatus", connector.pk),
        ("backups/backupauditevent", event.pk),
        ("alerts/alert", alert.pk),
        ("alerts/alertnotification", notification.pk),
    ]
    for path, pk in objects:
        change = admin_client.get(f"/admin/{path}/{pk}/change/")
        assert change.status_code == 200, path
        html = change.content.decode()
        assert 'name="_save"' not in html, path
        assert "deletelink" not in html, path
        assert admin_client.get(f"/admin/{path}/{pk}/delete/").status_code == 403, path
        assert admin_client.get(f"/admin/{path}/add/").status_code == 403, path
        listing = admin_client.get(f"/admin/{path}/").content.decode()
        assert "delete_selected" not in listing, path
    # Posting a change anyway changes nothing.
    admin_client.post(f"/admin/integrations/syncrun/{run.pk}/change/", {"error": "forged"})
    run.refresh_from_db()
    assert run.error == ""
    # Sync runs are titled by their connection's name.
    title = admin_client.get(f"/admin/integrations/syncrun/{run.pk}/change/").content.decode()
    assert f"Sync of Sandbox (#{run.pk})" in title
    # Customers stay editable.
    customer = Customer.objects.first()
    assert customer is not None
    page = admin_client.get(f"/admin/customers/customer/{customer.pk}/change/").content.decode()
    assert 'name="_save"' in page
