"""The API as an integrator meets it, in a real browser: an administrator creates a key
(shown once), then the interactive docs (Swagger UI, served by Vectis itself) take the key
and answer a request."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

from tests.browser.conftest import Shots, log_in
from tests.factories import ConnectorFactory, CustomerFactory

pytestmark = pytest.mark.browser


def test_a_key_made_in_the_admin_works_in_the_interactive_docs(
    page: Page, live_server: LiveServer, browser_admin: User
) -> None:
    contoso = CustomerFactory.create(name="Contoso Ltd")
    ConnectorFactory.create(customer=contoso)
    shot = Shots(page, "api-docs")
    base = live_server.url
    log_in(page, base)
    page.goto(f"{base}/admin/")
    page.get_by_role("link", name="API keys").first.click()
    page.get_by_role("link", name=re.compile("Add API key")).click()
    page.get_by_label(re.compile("^Name")).fill("PSA")
    page.get_by_role("button", name="Save", exact=True).click()
    shown = page.get_by_test_id("api-key")
    expect(shown).to_have_text(re.compile(r"^[A-Za-z0-9]{8}\.[A-Za-z0-9]{32}$"))
    secret = shown.inner_text()
    shot("key-shown-once")

    page.goto(f"{base}/api/docs/")
    page.get_by_role("button", name="Authorize").first.click()
    page.locator(".modal-ux input[type=text]").fill(f"Api-Key {secret}")
    shot("authorize")
    page.locator(".modal-ux").get_by_role("button", name="Apply credentials").click()
    page.locator(".modal-ux").get_by_role("button", name="Close").click()
    operation = page.locator(".opblock-get").filter(
        has=page.locator(".opblock-summary-path", has_text=re.compile(r"^/api/v1/customers/$"))
    )
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    live = operation.locator(".live-responses-table")
    status = live.locator("tbody .response-col_status").first
    expect(status).to_have_text("200", timeout=15_000)
    expect(live).to_contain_text('"name": "Contoso Ltd"')
    expect(live).to_contain_text('"worst_status": "ok"')
    shot("docs-answer")
