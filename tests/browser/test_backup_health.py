"""The morning routine in a real browser: dashboard, a customer's page, the review."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect
from pytest_django.fixtures import Settings
from pytest_django.live_server_helper import LiveServer

from alerts.services import evaluate
from backups.models import AccountLink, BackupAuditEvent, BackupConnector
from backups.runner import run_sync
from backups.selectors import status_counts
from customers.models import Customer
from integrations.models import Connection
from keepit_sandbox import KeepitSandbox
from tests.browser.conftest import Shots, log_in
from tests.conftest import sandbox_connection
from tests.factories import CustomerFactory, StaleRuleFactory

pytestmark = pytest.mark.browser


def sync_sandbox(sandbox: KeepitSandbox, settings: Settings) -> Connection:
    settings.KEEPIT_BASE_URL_TEMPLATE = sandbox.base_url_template
    connection = sandbox_connection(sandbox)
    assert run_sync(connection, now=sandbox.clock.now_datetime()).outcome == "succeeded"
    StaleRuleFactory.create(name="Stale", recipients="t@msp.example")
    evaluate(now=sandbox.clock.now_datetime(), send=False)
    return connection


def test_the_dashboard_and_a_customer_page_after_a_sync(
    page: Page,
    live_server: LiveServer,
    browser_admin: User,
    sandbox: KeepitSandbox,
    settings: Settings,
) -> None:
    sync_sandbox(sandbox, settings)
    counts = status_counts()
    shot = Shots(page, "backup-health")
    log_in(page, live_server.url)
    expect(page.get_by_test_id("count-failed")).to_have_text(str(counts["failed"]))
    shot("home")

    page.goto(f"{live_server.url}/admin/backups/")
    for status, count in counts.items():
        expect(page.get_by_test_id(f"count-{status}")).to_have_text(str(count))
    rows = page.locator("#attention-list tbody tr[data-status]")
    expect(rows).to_have_count(sum(n for s, n in counts.items() if s != "ok"))
    shot("dashboard")

    page.select_option("#f-status", "failed")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(counts["failed"])
    for status in rows.evaluate_all("rows => rows.map(r => r.dataset.status)"):
        assert status == "failed"
    shot("dashboard-failed")

    customer = Customer.objects.filter(audit_events__isnull=False).distinct().first()
    assert customer is not None
    page.goto(f"{live_server.url}/admin/customers/customer/{customer.pk}/change/")
    live = BackupConnector.objects.filter(customer=customer, removed_at=None)
    expect(page.locator("#customer-connectors tbody tr[data-status]")).to_have_count(live.count())
    timeline = page.locator("#timeline tbody tr[data-category]")
    before = timeline.count()
    assert before > 0
    shot("customer")
    category = (
        BackupAuditEvent.objects.filter(customer=customer, is_own_read=False, category="user")
        .values_list("category", flat=True)
        .first()
        or "recovery"
    )
    page.locator(f'#timeline-filters input[value="{category}"]').check()
    page.get_by_role("button", name="Filter timeline").click()
    categories = set(timeline.evaluate_all("rows => rows.map(r => r.dataset.category)"))
    assert categories <= {category}
    assert timeline.count() < before
    shot("customer-timeline-filtered")


def test_the_review_links_an_ambiguous_account_and_a_sync_keeps_it(
    page: Page,
    live_server: LiveServer,
    browser_admin: User,
    sandbox: KeepitSandbox,
    settings: Settings,
) -> None:
    CustomerFactory.create(name="Northwind Traders Inc")
    chosen = CustomerFactory.create(name="Northwind Traders Ltd")
    connection = sync_sandbox(sandbox, settings)
    link = AccountLink.objects.filter(state=AccountLink.State.AMBIGUOUS).first()
    assert link is not None
    shot = Shots(page, "account-review")
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/admin/account-links/review/")  # the old address still works
    row = page.locator("#result_list tr").filter(
        has=page.locator(f'[data-account="{link.external_id}"]')
    )
    expect(row).to_contain_text("same normalised name")
    shot("review")
    row.get_by_role("button", name="Link to Northwind Traders Ltd").click()
    expect(page.locator(".messagelist")).to_contain_text("syncs will keep this link")
    shot("linked")
    sandbox.advance(timedelta(minutes=15))
    run_sync(connection, now=sandbox.clock.now_datetime())
    link.refresh_from_db()
    assert (link.customer_id, link.method) == (chosen.pk, AccountLink.Method.MANUAL)
    page.goto(f"{live_server.url}/admin/backups/accountlink/?review=linked")
    linked = page.locator("#result_list tr").filter(
        has=page.locator(f'[data-account="{link.external_id}"]')
    )
    expect(linked).to_contain_text("Northwind Traders Ltd")
    expect(linked).to_contain_text("Linked")
    shot("after-sync")
