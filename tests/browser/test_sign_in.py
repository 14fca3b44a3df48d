"""Sign-in in a real browser: "Sign in with Microsoft" through a real OpenID Connect
provider on loopback (tests/oidc_provider), landing on the backup dashboard."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

from access.roles import TECHNICIAN
from tests.browser.conftest import Shots
from tests.sso_provider import ProviderUser, RunningProvider, start_provider

pytestmark = pytest.mark.browser


@pytest.fixture
def provider(live_server: LiveServer) -> Iterator[RunningProvider]:
    running = start_provider(
        [ProviderUser("alice", "alice-pw", "alice@msp.example", amr=["pwd", "mfa"])],
        client_id="vectis-browser",
        client_secret="vectis-browser-secret",
        redirect_uris=[f"{live_server.url}/accounts/oidc/sso/login/callback/"],
    )
    yield running
    running.stop()


def test_sign_in_with_microsoft_lands_on_the_dashboard(
    page: Page,
    live_server: LiveServer,
    provider: RunningProvider,
    settings: Any,
    transactional_db: None,
) -> None:
    settings.VECTIS_SSO_TENANT_ID = "tenant-msp"
    settings.VECTIS_REQUIRE_MFA = True
    settings.SOCIALACCOUNT_PROVIDERS = {
        "openid_connect": {
            "APPS": [
                {
                    "provider_id": "sso",
                    "name": "Microsoft",
                    "client_id": "vectis-browser",
                    "secret": "vectis-browser-secret",
                    "settings": {
                        "server_url": provider.issuer,
                        "oauth_pkce_enabled": True,
                        "fetch_userinfo": False,
                        "token_auth_method": "client_secret_post",
                    },
                }
            ]
        }
    }
    alice = User.objects.create_user("alice", "alice@msp.example", is_staff=True)
    alice.groups.add(Group.objects.get(name=TECHNICIAN))
    shot = Shots(page, "sso-sign-in")
    page.goto(f"{live_server.url}/admin/backups/")
    expect(page).to_have_title("Sign in · Vectis")
    shot("vectis-sign-in")
    page.get_by_role("button", name="Sign in with Microsoft").click()
    page.wait_for_url(f"{provider.base}/**")
    shot("provider-sign-in")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("alice-pw")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/admin/backups/")
    expect(page.locator("#user-tools")).to_contain_text("alice")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Backup")
    shot("dashboard")
