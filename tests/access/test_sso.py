"""Single sign-on against a real OpenID Connect provider on loopback (django-oauth-toolkit
in its own process, tests/oidc_provider): the authorization code flow with PKCE, the ID
token's signature checked, only the MSP's tenant, only verified e-mail addresses."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
import requests
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import TOTP
from django.contrib.auth.models import Group, User
from django.test import Client

from access.models import UserAccess
from access.roles import READ_ONLY, TECHNICIAN
from tests.sso_provider import ProviderUser, RunningProvider, start_provider

pytestmark = pytest.mark.django_db

TENANT = "tenant-msp"
CLIENT_ID, CLIENT_SECRET = "vectis-test", "vectis-test-secret"
CALLBACK = "http://testserver/accounts/oidc/sso/login/callback/"
PEOPLE = [
    ProviderUser("alice", "alice-pw", "alice@msp.example", amr=["pwd", "mfa"]),
    ProviderUser("bob", "bob-pw", "bob@msp.example", amr=["pwd"]),
    ProviderUser("mallory", "mallory-pw", "mallory@msp.example", tid="tenant-other"),
    ProviderUser("eve", "eve-pw", "eve@msp.example", email_verified=False),
    ProviderUser("newbie", "newbie-pw", "newbie@msp.example", amr=["mfa"]),
    ProviderUser("guest", "guest-pw", "guest@customer.example", acct=1),
    ProviderUser("olga", "olga-pw", "olga@msp.example"),
]


@pytest.fixture(scope="module")
def provider() -> Iterator[RunningProvider]:
    running = start_provider(
        PEOPLE, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, redirect_uris=[CALLBACK]
    )
    yield running
    running.stop()


def sso_settings(provider: RunningProvider, **overrides: Any) -> dict[str, Any]:
    return {
        "openid_connect": {
            "APPS": [
                {
                    "provider_id": "sso",
                    "name": "Microsoft",
                    "client_id": CLIENT_ID,
                    "secret": CLIENT_SECRET,
                    "settings": {
                        "server_url": provider.issuer,
                        "oauth_pkce_enabled": True,
                        "fetch_userinfo": False,
                        "token_auth_method": "client_secret_post",
                        **overrides,
                    },
                }
            ]
        }
    }


@pytest.fixture(autouse=True)
def sso(settings: Any, provider: RunningProvider) -> None:
    settings.SOCIALACCOUNT_PROVIDERS = sso_settings(provider)
    settings.VECTIS_SSO_TENANT_ID = TENANT
    settings.VECTIS_REQUIRE_MFA = True


def staff(username: str, email: str, role: str = TECHNICIAN) -> User:
    user = User.objects.create_user(username, email, "local-password-123", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


def sign_in_with_sso(
    client: Client, provider: RunningProvider, username: str, password: str
) -> Any:
    """The browser's part: the button on the sign-in page, the provider's login form,
    back to Vectis with the code."""
    page = client.get("/accounts/login/?next=/admin/").content.decode()
    assert "Sign in with Microsoft" in page
    start = client.post("/accounts/oidc/sso/login/", {"next": "/admin/"})
    assert start.status_code == 302, start.content.decode()[:2000]
    authorize = start["Location"]
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"]  # PKCE
    assert query["response_type"] == ["code"]
    back = provider.sign_in(requests.Session(), authorize, username, password)
    parts = urlsplit(back)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == CALLBACK
    return client.get(f"{parts.path}?{parts.query}")


def test_a_user_matched_by_verified_email_signs_in_and_mfa_asserted_by_the_provider_counts(
    client: Client, provider: RunningProvider
) -> None:
    alice = staff("alice.local", "Alice@MSP.example")
    done = sign_in_with_sso(client, provider, "alice", "alice-pw")
    assert done.status_code == 302
    assert done["Location"] == "/admin/"
    assert client.session["_auth_user_id"] == str(alice.pk)
    # Entra said "mfa": no enrolment, straight to the dashboard.
    home = client.get("/admin/")
    assert home.status_code == 200
    assert "Protect your sign-in with a second factor" not in home.content.decode()
    # With an authenticator app set up as well, no code is asked either: not twice.
    TOTP.activate(alice, pyotp.random_base32())
    again = Client()
    assert sign_in_with_sso(again, provider, "alice", "alice-pw")["Location"] == "/admin/"
    assert again.get("/admin/").status_code == 200


def test_without_mfa_from_the_provider_the_user_enrols_or_gives_a_code(
    provider: RunningProvider,
) -> None:
    bob = staff("bob", "bob@msp.example")
    first = Client()
    assert sign_in_with_sso(first, provider, "bob", "bob-pw")["Location"] == "/admin/"
    enrol = first.get("/admin/")
    assert enrol.status_code == 302
    assert enrol["Location"].startswith("/accounts/2fa/totp/activate/")
    # With an authenticator app, the code is asked after SSO too.
    secret = pyotp.random_base32()
    TOTP.activate(bob, secret)
    second = Client()
    asked = sign_in_with_sso(second, provider, "bob", "bob-pw")
    assert asked["Location"] == "/accounts/2fa/authenticate/"
    assert (
        second.post("/accounts/2fa/authenticate/", {"code": pyotp.TOTP(secret).now()})["Location"]
        == "/admin/"
    )
    assert second.get("/admin/").status_code == 200


def test_another_tenant_is_refused(client: Client, provider: RunningProvider) -> None:
    staff("mallory", "mallory@msp.example")
    refused = sign_in_with_sso(client, provider, "mallory", "mallory-pw")
    assert refused.status_code == 403
    text = refused.content.decode()
    assert "belongs to another organisation (tenant “tenant-other”)" in text
    assert f"accepts accounts of tenant {TENANT} only" in text
    assert "_auth_user_id" not in client.session


def test_an_unverified_email_is_refused(client: Client, provider: RunningProvider) -> None:
    staff("eve", "eve@msp.example")
    refused = sign_in_with_sso(client, provider, "eve", "eve-pw")
    assert refused.status_code == 403
    assert "did not vouch for this account's e-mail address (eve@msp.example)" in (
        html.unescape(refused.content.decode())
    )
    assert "_auth_user_id" not in client.session


def test_an_id_token_signed_with_another_key_is_refused(
    client: Client, provider: RunningProvider, settings: Any
) -> None:
    """The provider's keys are taken from somewhere else (as if the token endpoint were
    impersonated): the signature does not verify, nobody signs in."""
    impostor = start_provider([], client_id="x", client_secret="y", redirect_uris=[CALLBACK])
    try:
        settings.SOCIALACCOUNT_PROVIDERS = sso_settings(
            provider, openid_configuration_overrides={"jwks_uri": impostor.jwks_url}
        )
        staff("alice", "alice@msp.example")
        refused = sign_in_with_sso(client, provider, "alice", "alice-pw")
    finally:
        impostor.stop()
    assert "_auth_user_id" not in client.session
    assert "Single sign-on failed" in refused.content.decode()
    assert client.get("/admin/").status_code == 302


def test_nobody_unknown_gets_in_unless_auto_create_is_on(
    client: Client, provider: RunningProvider, settings: Any
) -> None:
    refused = sign_in_with_sso(client, provider, "newbie", "newbie-pw")
    assert refused.status_code == 403
    assert "No Vectis user has the e-mail newbie@msp.example" in refused.content.decode()
    assert not User.objects.filter(email="newbie@msp.example").exists()
    settings.VECTIS_SSO_AUTO_CREATE = True
    done = sign_in_with_sso(Client(), provider, "newbie", "newbie-pw")
    assert done["Location"] == "/admin/"
    newbie = User.objects.get(email="newbie@msp.example")
    assert newbie.is_staff
    assert new_browser_home(done) == 200
    assert [g.name for g in newbie.groups.all()] == [READ_ONLY]
    assert UserAccess.objects.get(user=newbie).sso_only
    assert not newbie.has_usable_password()


def test_a_user_restricted_to_sso_cannot_use_a_password(
    client: Client, provider: RunningProvider
) -> None:
    bob = staff("bob", "bob@msp.example")
    UserAccess.objects.update_or_create(user=bob, defaults={"sso_only": True})
    refused = client.post("/accounts/login/", {"login": "bob", "password": "local-password-123"})
    assert refused.status_code == 200
    assert "Your account signs in with Microsoft only" in refused.content.decode()
    assert "_auth_user_id" not in client.session
    wrong = Client().post("/accounts/login/", {"login": "bob", "password": "not-it"})
    assert "signs in with Microsoft only" not in wrong.content.decode()  # gives nothing away
    assert sign_in_with_sso(client, provider, "bob", "bob-pw")["Location"] == "/admin/"
    assert not Authenticator.objects.exists()
    # Signed in through SSO, an SSO-only user stays signed in, and (no password to give,
    # no MFA from the provider) enrols a second factor without being asked for one.
    sent = client.get("/admin/")
    assert sent.status_code == 302
    assert sent["Location"] == "/accounts/2fa/totp/activate/"
    page = client.get("/accounts/2fa/totp/activate/")
    assert page.status_code == 200
    secret = re.search(r'id="authenticator_secret"[^>]*value="([A-Z2-7]+)"', page.content.decode())
    assert secret
    done = client.post("/accounts/2fa/totp/activate/", {"code": pyotp.TOTP(secret.group(1)).now()})
    assert done.status_code == 302
    assert client.get(done["Location"]).status_code == 200  # the recovery codes
    assert client.get("/admin/").status_code == 200


def new_browser_home(response: Any) -> int:
    """The status of /admin/ for the browser that just signed in."""
    client: Client = response.client
    return client.get("/admin/").status_code


def test_a_guest_of_the_tenant_is_refused(client: Client, provider: RunningProvider) -> None:
    staff("guest", "guest@customer.example")
    refused = sign_in_with_sso(client, provider, "guest", "guest-pw")
    assert refused.status_code == 403
    assert "Guest accounts of your Microsoft tenant cannot sign in" in refused.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_user_without_a_role_is_told_so_and_never_loops(
    client: Client, provider: RunningProvider
) -> None:
    olga = User.objects.create_user("olga", "olga@msp.example", "local-password-123")
    refused = sign_in_with_sso(client, provider, "olga", "olga-pw")
    assert refused.status_code == 403
    assert "has no access to Vectis" in refused.content.decode()
    # With a password: signed in, and the admin says why it stays closed.
    browser = Client()
    assert (
        browser.post(
            "/accounts/login/", {"login": "olga", "password": "local-password-123"}
        ).status_code
        == 302
    )
    page = browser.get("/admin/", follow=True)
    assert page.status_code == 403
    assert len(page.redirect_chain) <= 2
    assert "has no access to Vectis" in page.content.decode()
    assert "Sign out" in page.content.decode()
    # Given a role, the user is staff and gets in.
    olga.groups.add(Group.objects.get(name=READ_ONLY))
    olga.refresh_from_db()
    assert olga.is_staff
    assert sign_in_with_sso(Client(), provider, "olga", "olga-pw")["Location"] == "/admin/"
