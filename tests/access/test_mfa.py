"""A second factor, enforced: TOTP enrolment and sign-in with a code computed by pyotp
(as an authenticator app would), recovery codes that work once, and no page at all for a
staff user without a second factor while `VECTIS_REQUIRE_MFA` is on."""

from __future__ import annotations

import html
import re
from typing import Any

import pyotp
import pytest
from allauth.mfa.models import Authenticator
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-enough-password"
# Every kind of page a signed-in user could ask for.
PAGES = [
    "/admin/",
    "/admin/backups/",
    "/admin/integrations/",
    "/admin/customers/customer/",
    "/admin/alerts/alert/",
    "/admin/keepit/keepitconnection/",
    "/admin/auth/user/",
    "/accounts/password/change/",
]


@pytest.fixture(autouse=True)
def require_mfa(settings: Any) -> None:
    settings.VECTIS_REQUIRE_MFA = True


def sign_in(client: Client, username: str = "noc", password: str = PASSWORD) -> str:
    """Posts the sign-in form; the address it sends the browser to."""
    response = client.post(
        "/accounts/login/?next=/admin/", {"login": username, "password": password}
    )
    assert response.status_code == 302, response.content.decode()[:1500]
    return str(response["Location"])


def enrol(client: Client) -> tuple[pyotp.TOTP, list[str]]:
    """Scans the secret the enrolment page shows, enters the app's code; returns the
    authenticator app and the recovery codes shown afterwards."""
    page = client.get("/accounts/2fa/totp/activate/")
    assert page.status_code == 200
    found = re.search(r'id="authenticator_secret"[^>]*value="([A-Z2-7]+)"', page.content.decode())
    assert found, "the enrolment page shows the secret"
    app = pyotp.TOTP(found.group(1))
    done = client.post("/accounts/2fa/totp/activate/", {"code": app.now()})
    assert done.status_code == 302
    codes_page = client.get(done["Location"]).content.decode()
    textarea = re.search(
        r'<textarea[^>]*id="recovery_codes"[^>]*>(.*?)</textarea>', codes_page, re.S
    )
    assert textarea, "the recovery codes are shown once enrolled"
    return app, html.unescape(textarea.group(1)).split()


def test_a_staff_user_without_a_second_factor_reaches_no_page_until_enrolled(
    client: Client,
) -> None:
    User.objects.create_superuser("noc", "noc@msp.example", PASSWORD)
    assert sign_in(client) == "/admin/"
    for page in PAGES:
        response = client.get(page)
        assert response.status_code == 302, page
        assert response["Location"].startswith("/accounts/2fa/totp/activate/"), page
    _, codes = enrol(client)
    assert len(codes) == 10
    for page in PAGES:
        assert client.get(page).status_code == 200, page


def test_sign_in_asks_for_the_authenticator_code_and_a_recovery_code_works_once() -> None:
    User.objects.create_superuser("noc", "noc@msp.example", PASSWORD)
    first = Client()
    sign_in(first)
    app, codes = enrol(first)
    # A new browser: the password alone is not enough.
    browser = Client()
    assert sign_in(browser) == "/accounts/2fa/authenticate/"
    assert browser.get("/admin/").status_code == 302  # not signed in yet
    wrong = browser.post("/accounts/2fa/authenticate/", {"code": "000000"})
    assert wrong.status_code == 200
    assert "Incorrect code" in wrong.content.decode()
    right = browser.post("/accounts/2fa/authenticate/", {"code": app.now()})
    assert right.status_code == 302
    assert right["Location"] == "/admin/"
    assert browser.get("/admin/").status_code == 200
    # A recovery code, once.
    for attempt in range(2):
        other = Client()
        assert sign_in(other) == "/accounts/2fa/authenticate/"
        response = other.post("/accounts/2fa/authenticate/", {"code": codes[0]})
        if attempt == 0:
            assert response.status_code == 302
            assert other.get("/admin/").status_code == 200
        else:
            assert response.status_code == 200
            assert "Incorrect code" in response.content.decode()
            assert other.get("/admin/").status_code == 302


def test_totp_secrets_are_encrypted_at_rest_and_never_shown_in_the_admin(client: Client) -> None:
    noc = User.objects.create_superuser("noc", "noc@msp.example", PASSWORD)
    sign_in(client)
    app, _ = enrol(client)
    stored = Authenticator.objects.get(user=noc, type="totp")
    assert app.secret not in str(stored.data)
    with connection.cursor() as cursor:
        cursor.execute("SELECT data::text FROM mfa_authenticator")
        assert app.secret not in repr(cursor.fetchall())
    page = client.get(f"/admin/mfa/authenticator/{stored.pk}/change/")
    assert page.status_code == 200
    assert "noc" in page.content.decode()
    assert app.secret not in page.content.decode()
    assert str(stored.data["secret"]) not in page.content.decode()
    assert 'name="_save"' not in page.content.decode()  # seen, never edited
    assert client.get("/accounts/email/").status_code == 404


def test_with_the_requirement_off_enrolment_is_offered_not_forced(
    client: Client, settings: Any
) -> None:
    """The demo (DEBUG): every page opens; the home page offers two-factor sign-in."""
    settings.VECTIS_REQUIRE_MFA = False
    User.objects.create_superuser("noc", "noc@msp.example", PASSWORD)
    sign_in(client)
    home = client.get("/admin/")
    assert home.status_code == 200
    assert "Protect your sign-in with a second factor" in home.content.decode()
    enrol(client)
    assert "Protect your sign-in with a second factor" not in client.get("/admin/").content.decode()
