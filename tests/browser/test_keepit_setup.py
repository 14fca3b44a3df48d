"""The setup guide, in a real browser: Integrations → Keepit → Configure → Test → Enable."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Locator, Page, expect
from pytest_django.fixtures import Settings
from pytest_django.live_server_helper import LiveServer

from keepit.models import KeepitConnection
from keepit_sandbox import KeepitSandbox
from tests.browser.conftest import Shots, log_in

pytestmark = pytest.mark.browser


def label(page: Page, text: str) -> Locator:
    """The field whose label is exactly `text` (the admin adds a colon)."""
    return page.get_by_label(re.compile(rf"^{re.escape(text)}:?$"))


def test_an_admin_sets_up_keepit_in_the_browser(
    page: Page,
    live_server: LiveServer,
    browser_admin: User,
    sandbox: KeepitSandbox,
    settings: Settings,
) -> None:
    settings.KEEPIT_BASE_URL_TEMPLATE = sandbox.base_url_template
    shot = Shots(page, "keepit-setup")
    base = live_server.url
    log_in(page, base)
    shot("logged-in")

    page.get_by_role("link", name="Integrations").first.click()
    card = page.locator('[data-provider="keepit"]')
    expect(card.get_by_test_id("state")).to_have_text("Not configured")
    shot("integrations")
    card.get_by_role("link", name="Configure").click()
    expect(page.get_by_role("heading", name=re.compile("Add Keepit connection"))).to_be_visible()

    label(page, "Name").fill("Keepit US")
    label(page, "Keepit URL").fill(f"https://us-dc.keepit.com/users/{sandbox.msp.parent.guid}")
    expect(label(page, "Region")).to_have_value("us-dc")
    expect(label(page, "Account GUID")).to_have_value(sandbox.msp.parent.guid)
    label(page, "Username").fill(sandbox.config.username)
    label(page, "Password").fill(sandbox.config.password)
    shot("filled")

    page.get_by_role("button", name="Test connection").click()
    result = page.get_by_test_id("test-message")
    expect(result).to_have_text(
        f"Connected to Keepit (us-dc). 8 customer accounts visible under {sandbox.msp.parent.guid}."
    )
    expect(page.locator("#keepit-test-result")).to_contain_text("dedicated API token")
    shot("test-ok")

    label(page, "Password").fill("not-the-password")
    page.get_by_role("button", name="Test connection").click()
    expect(result).to_contain_text("Keepit refused the username or password in region us-dc.")
    shot("test-wrong-password")

    label(page, "API token login").fill(sandbox.config.token_login)
    label(page, "API token password").fill(sandbox.config.token_password)
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#keepit-test-result")).to_contain_text(
        f"Signed in with the API token {sandbox.config.token_login}."
    )
    expect(page.locator("#keepit-test-result")).not_to_contain_text("dedicated API token")
    shot("test-token")

    label(page, "Password").fill(sandbox.config.password)
    label(page, "Enabled").check()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    shot("saved")
    connection = KeepitConnection.objects.get()
    assert connection.enabled
    assert connection.secrets["token_password"] == sandbox.config.token_password

    page.goto(f"{base}/admin/integrations/")
    expect(card.get_by_test_id("state")).to_have_text("Enabled")
    shot("card-enabled")
    assert sandbox.config.password not in page.content()
