"""Alerts where MSPs work, in a real browser: a Teams channel set up and tested from its
page, and a maintenance window that the dashboard shows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

from alerts.models import AlertNotification, MaintenanceWindow, NotificationChannel
from backups.models import BackupStatus
from tests.alerts.receivers import Receiver, start_receiver
from tests.browser.conftest import Shots, log_in
from tests.factories import ConnectorFactory, CustomerFactory

pytestmark = pytest.mark.browser


@pytest.fixture
def teams_receiver() -> Iterator[Receiver]:
    running = start_receiver(tls=True)
    yield running
    running.stop()


def test_a_teams_channel_is_created_and_its_send_test_answers_in_place(
    page: Page, live_server: LiveServer, browser_admin: User, teams_receiver: Receiver
) -> None:
    shot = Shots(page, "teams-channel")
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/admin/alerts/notificationchannel/add/")
    page.get_by_label("Name").fill("NOC Teams")
    page.get_by_label("Kind").select_option(label="Microsoft Teams (Workflows webhook)")
    # Only the fields a Teams channel uses are shown.
    expect(page.locator(".form-row.field-addresses")).to_be_hidden()
    expect(page.locator(".form-row.field-new_secret")).to_be_hidden()
    url = f"workflows://127.0.0.1:{teams_receiver.port}/wf42/sig42?verify=no"
    page.locator("#id_url").fill(url)
    shot("form")
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator("ul.messagelist")).to_contain_text("was added successfully")
    # The URL is a secret: the page never shows it again, only where it points.
    assert "sig42" not in page.content()
    expect(page.locator(".field-target")).to_contain_text("127.0.0.1")

    page.get_by_role("button", name="Send test").click()
    answer = page.get_by_test_id("test-message")
    expect(answer).to_contain_text("Delivered to “NOC Teams”")
    expect(answer).to_have_class("vx-result vx-show vx-success")
    shot("test-delivered")
    (request,) = teams_receiver.requests
    assert request.path.startswith("/workflows/wf42/triggers/manual/paths/invoke")
    assert "This is a test message from Vectis" in request.body.decode()

    # A Workflows URL that was deleted in Teams answers 404: said in place, in words.
    teams_receiver.answer(404)
    page.get_by_role("button", name="Send test").click()
    expect(answer).to_contain_text("Not delivered")
    expect(answer).to_have_class("vx-result vx-show vx-error")
    shot("test-refused")
    channel = NotificationChannel.objects.get(name="NOC Teams")
    statuses = list(
        AlertNotification.objects.filter(channel=channel)
        .order_by("pk")
        .values_list("status", flat=True)
    )
    assert statuses == ["sent", "failed"]


def test_a_maintenance_window_marks_the_customer_on_the_dashboard(
    page: Page, live_server: LiveServer, browser_admin: User
) -> None:
    contoso = CustomerFactory.create(name="Contoso Ltd")
    ConnectorFactory.create(
        customer=contoso, name="Contoso Mail", backup_status__status=BackupStatus.FAILED
    )
    ConnectorFactory.create(
        customer=CustomerFactory.create(name="Fabrikam Inc"),
        name="Fabrikam Mail",
        backup_status__status=BackupStatus.FAILED,
    )
    shot = Shots(page, "maintenance-window")
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/admin/backups/")
    expect(page.get_by_test_id("in-maintenance")).to_have_count(0)

    page.goto(f"{live_server.url}/admin/alerts/maintenancewindow/add/")
    page.get_by_label("Reason").fill("Tenant migration")
    # The customer field searches as you type (the admin's autocomplete).
    page.locator(".field-customer .select2-selection").click()
    page.locator(".select2-search__field").fill("Conto")
    page.locator(".select2-results__option", has_text="Contoso Ltd").click()
    now = timezone.now()
    start, end = now - timedelta(hours=1), now + timedelta(hours=3)
    page.locator("#id_starts_at_0").fill(f"{start:%Y-%m-%d}")
    page.locator("#id_starts_at_1").fill(f"{start:%H:%M:%S}")
    page.locator("#id_ends_at_0").fill(f"{end:%Y-%m-%d}")
    page.locator("#id_ends_at_1").fill(f"{end:%H:%M:%S}")
    shot("form")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("ul.messagelist")).to_contain_text("was added successfully")
    window = MaintenanceWindow.objects.get()
    assert window.customer == contoso
    shot("list")

    page.goto(f"{live_server.url}/admin/backups/")
    contoso_row = page.locator("#attention-list tbody tr", has_text="Contoso Mail")
    fabrikam_row = page.locator("#attention-list tbody tr", has_text="Fabrikam Mail")
    expect(contoso_row.get_by_test_id("in-maintenance")).to_have_text("In maintenance")
    expect(fabrikam_row.get_by_test_id("in-maintenance")).to_have_count(0)
    shot("dashboard")
