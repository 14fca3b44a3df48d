"""A NOC console worth a wall screen, in a real browser at desk (1440 x 900) and phone
(390 x 844) sizes: the main pages read without horizontal scrolling on a phone, pass
axe-core without a serious or critical violation, triage works from the keyboard, the
kiosk wallboard works without sign-in until revoked, and a running sync's progress moves
on the connection page."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connections
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect
from pytest_django.live_server_helper import LiveServer

from alerts import services
from alerts.models import Alert
from backups.models import BackupStatus
from integrations.models import SyncRun
from keepit.models import KeepitConnection
from tests.browser.conftest import Shots, log_in
from tests.factories import ConnectorFactory, CustomerFactory, FailedRuleFactory, StaleRuleFactory

pytestmark = pytest.mark.browser

AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
# name: (width, height, colour scheme)
SIZES = {
    "desk": (1440, 900, "light"),
    "desk-dark": (1440, 900, "dark"),
    "phone": (390, 844, "light"),
    "phone-dark": (390, 844, "dark"),
}


@dataclass
class Console:
    customer: int
    alert: int
    connection: int


@pytest.fixture
def console(transactional_db: None) -> Console:
    now = timezone.now()
    connection = KeepitConnection.objects.create(
        provider="keepit",
        name="Keepit US",
        enabled=True,
        config={
            "region": "us-dc",
            "account_guid": "y17hbi-i620pk-80q5x2",
            "username": "noc@msp.example",
        },
        last_success_at=now - timedelta(minutes=7),
    )
    StaleRuleFactory.create()
    FailedRuleFactory.create()
    contoso = CustomerFactory.create(name="Contoso Ltd")
    fabrikam = CustomerFactory.create(name="Fabrikam International Holdings (Scandinavia)")
    ConnectorFactory.create(
        customer=contoso,
        connection=connection,
        name="Contoso Mail",
        backup_status__status=BackupStatus.FAILED,
        backup_status__reason_text="The backup job failed: the mailbox could not be reached",
        backup_status__last_success_at=now - timedelta(days=3),
    )
    ConnectorFactory.create(
        customer=fabrikam,
        connection=connection,
        name="Fabrikam SharePoint and OneDrive for Business",
        backup_status__status=BackupStatus.WARNING,
        backup_status__last_success_at=now - timedelta(hours=30),
    )
    ConnectorFactory.create(
        customer=contoso,
        connection=connection,
        name="Contoso Files",
        backup_status__last_success_at=now - timedelta(hours=1),
    )
    services.evaluate(now=now, send=False)
    return Console(
        customer=contoso.pk,
        alert=Alert.objects.filter(connector__name="Contoso Mail").values_list("pk", flat=True)[0],
        connection=connection.pk,
    )


def accessibility_problems(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page, one line each."""
    page.add_script_tag(path=str(AXE))
    result: dict[str, Any] = page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})"
    )
    return [
        f"{v['impact']}: {v['id']} ({v['help']}) at "
        + ", ".join(str(node["target"][0]) for node in v["nodes"][:3])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def horizontal_overflow(page: Page) -> int:
    return int(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


@pytest.mark.parametrize("size", list(SIZES))
def test_the_main_pages_read_on_a_desk_and_a_phone_and_pass_axe(
    browser: Browser, live_server: LiveServer, browser_admin: User, console: Console, size: str
) -> None:
    width, height, scheme = SIZES[size]
    context = browser.new_context(
        viewport={"width": width, "height": height},
        color_scheme=scheme,  # type: ignore[arg-type]
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        shot = Shots(page, f"console-{size}")
        log_in(page, live_server.url)
        pages = {
            "dashboard": "/admin/backups/",
            "customer": f"/admin/customers/customer/{console.customer}/change/",
            "alert": f"/admin/alerts/alert/{console.alert}/change/",
            "connection": f"/admin/keepit/keepitconnection/{console.connection}/change/",
            "wallboard": "/wallboard/",
        }
        problems: dict[str, Any] = {}
        for name, path in pages.items():
            page.goto(f"{live_server.url}{path}")
            expect(page).to_have_title(re.compile(r" · Vectis$"))
            shot(name)
            found = accessibility_problems(page)
            if found:
                problems[f"{name}: axe"] = found
            if width < 500 and name in ("dashboard", "customer"):
                unlabelled = page.evaluate(
                    "Array.from(document.querySelectorAll('table.vx-table tbody td'))"
                    ".filter(td => td.colSpan === 1 && !td.dataset.label).length"
                )
                if unlabelled:
                    problems[f"{name}: cards without labels"] = unlabelled
            if width < 500 and horizontal_overflow(page) > 0:
                problems[f"{name}: scrolls sideways"] = horizontal_overflow(page)
        assert problems == {}, json.dumps(problems, indent=1)
    finally:
        context.close()


def test_a_kiosk_wallboard_runs_without_sign_in_until_revoked(
    page: Page, browser: Browser, live_server: LiveServer, browser_admin: User, console: Console
) -> None:
    shot = Shots(page, "kiosk")
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/admin/access/kiosklink/add/")
    page.get_by_label("Name").fill("NOC TV")
    page.get_by_role("button", name="Save", exact=True).click()
    url = page.get_by_test_id("kiosk-url").inner_text()
    shot("link-created")
    tv = browser.new_context(viewport={"width": 1920, "height": 1080})
    screen = tv.new_page()
    try:
        screen.goto(url)
        expect(screen.get_by_role("heading", level=1)).to_contain_text("NOC TV")
        expect(screen.get_by_test_id("wall-failed")).to_have_text("1")
        expect(screen.locator("#clock")).not_to_have_text("--:--:--")
        assert accessibility_problems(screen) == []
        Shots(screen, "kiosk")("wallboard-1080p")
        # A refresh brings new figures and keeps the scroll position.
        ConnectorFactory.create(
            name="Northwind Mail",
            backup_status__status=BackupStatus.FAILED,
            backup_status__last_success_at=timezone.now() - timedelta(days=2),
        )
        screen.set_viewport_size({"width": 1280, "height": 300})
        screen.evaluate("window.scrollTo(0, 200)")
        screen.evaluate("window.vectisRefreshNow()")
        expect(screen.get_by_test_id("wall-failed")).to_have_text("2")
        assert screen.evaluate("window.scrollY") == 200
        expect(screen.locator("#status-line")).to_contain_text("updated")
        # Revoked in the admin: the screen's next refresh says so.
        page.goto(f"{live_server.url}/admin/access/kiosklink/")
        page.get_by_role("checkbox", name="Select this object for an action - NOC TV").check()
        page.get_by_label("Action:").select_option("revoke")
        page.get_by_role("button", name="Go").click()
        expect(page.locator(".messagelist")).to_contain_text("1 link(s) revoked")
        screen.goto(url)
        expect(screen.get_by_test_id("kiosk-refused")).to_contain_text("not valid any more")
    finally:
        tv.close()


def test_triage_from_the_keyboard_alone(
    page: Page, live_server: LiveServer, browser_admin: User, console: Console
) -> None:
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/admin/alerts/alert/{console.alert}/change/")
    for _ in range(80):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.value") == "acknowledge":
            break
    else:
        pytest.fail("Tab never reached the Acknowledge button")
    focused = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert focused != "none"  # the focus is visible
    page.keyboard.press("Enter")
    expect(page.locator(".messagelist")).to_contain_text("Alert acknowledged")
    assert Alert.objects.get(pk=console.alert).state == Alert.State.ACKNOWLEDGED


def test_the_connection_page_follows_a_running_sync(
    page: Page, live_server: LiveServer, browser_admin: User, settings: Any
) -> None:
    """A sandbox sync with 60 ms per request, in four parts of two accounts: the line
    under State moves from part to part without a reload, and ends with the outcome."""
    from backups.runner import run_sync
    from tests.conftest import sandbox_connection, slow_sandbox

    sandbox = slow_sandbox(latency_ms=60)
    try:
        settings.KEEPIT_BASE_URL_TEMPLATE = sandbox.base_url_template
        settings.VECTIS_SYNC_CHUNK_ACCOUNTS = 2
        connection = sandbox_connection(sandbox)
        shot = Shots(page, "sync-progress")
        log_in(page, live_server.url)
        page.goto(f"{live_server.url}/admin/keepit/keepitconnection/{connection.pk}/change/")
        line = page.locator("#sync-progress")
        expect(line).to_have_text("No sync yet.")
        started = threading.Event()

        def sync() -> None:
            try:
                started.set()
                run_sync(connection)
            finally:
                connections.close_all()

        worker = threading.Thread(target=sync)
        worker.start()
        started.wait(5)
        for _ in range(100):  # until the run exists: then the page follows it
            if SyncRun.objects.filter(connection=connection).exists():
                break
            page.wait_for_timeout(50)
        page.reload()
        seen: list[str] = []
        for _ in range(300):
            text = line.inner_text()
            if not seen or seen[-1] != text:
                seen.append(text)
                if text.startswith("Reading accounts"):
                    shot("reading-accounts")
            if text.startswith("Last sync"):
                break
            page.wait_for_timeout(100)
        worker.join(timeout=60)
        shot("finished")
    finally:
        sandbox.stop()
    assert len([t for t in seen if t.endswith("so far.")]) >= 2, seen
    assert seen[-1].startswith("Last sync succeeded: 8 of 8 accounts read"), seen


def test_the_monthly_report_downloads_from_the_customer_page(
    page: Page, live_server: LiveServer, browser_admin: User, console: Console
) -> None:
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/admin/customers/customer/{console.customer}/change/")
    month = page.get_by_label(re.compile("Monthly report"))
    chosen = month.locator("option").first.get_attribute("value")
    with page.expect_download() as download:
        page.get_by_test_id("monthly-report").click()
    got = download.value
    assert got.suggested_filename == f"backup-report-contoso-ltd-{chosen}.pdf"
    path = got.path()
    assert path.read_bytes().startswith(b"%PDF-")
