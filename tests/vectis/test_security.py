"""What a tool holding an MSP's master credentials needs: throttled sign-in, HTTPS in
production, one connection per Keepit account."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from keepit.forms import KeepitConnectionForm
from keepit.models import KeepitConnection
from tests.conftest import ROOT, subprocess_env

LOGIN = "/accounts/login/?next=/admin/"


def attempt(client: Client, password: str, *, address: str = "203.0.113.9", user: str = "noc"):  # type: ignore[no-untyped-def]
    return client.post(LOGIN, {"login": user, "password": password}, REMOTE_ADDR=address)


@pytest.mark.django_db
def test_the_sixth_wrong_password_in_a_row_is_refused_even_with_the_right_one(
    client: Client,
) -> None:
    User.objects.create_superuser("noc", "noc@msp.example", "the-right-password")
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        for _ in range(5):
            response = attempt(client, "wrong")
            assert response.status_code in (200, 429)
        locked = attempt(client, "the-right-password")
        assert locked.status_code == 429
        text = " ".join(locked.content.decode().split())
        assert (
            "Sign-in is locked for noc: 5 wrong passwords in a row. Try again in 15 minutes" in text
        )
        assert "_auth_user_id" not in client.session
        # From another address, the user is still locked (the user is throttled too).
        assert attempt(client, "the-right-password", address="198.51.100.4").status_code == 429
        # After the cool-off, the right password works again.
        clock.move_to(start + timedelta(minutes=16))
        welcome = attempt(client, "the-right-password")
        assert welcome.status_code == 302
        assert "_auth_user_id" in client.session


@pytest.mark.django_db
def test_an_address_that_guesses_many_users_is_locked_out(client: Client) -> None:
    User.objects.create_superuser("noc", "noc@msp.example", "the-right-password")
    for name in ("alice", "bob", "carol", "dave", "erin"):
        attempt(client, "guess", user=name)
    assert attempt(client, "the-right-password").status_code == 429


def test_the_production_settings_pass_the_deploy_check_without_a_warning() -> None:
    """The production environment the README documents: DEBUG off, secrets set, served
    behind a TLS proxy; `manage.py check --deploy` finds nothing to say."""
    env = subprocess_env(
        DJANGO_SETTINGS_MODULE="vectis.settings",
        DEBUG="false",
        SECRET_KEY="k7%Zq!v9-long-random-production-secret-key-0123456789-abcdefghij",
        VECTIS_ENCRYPTION_KEYS="dGVzdC1rZXktb25lLXRlc3Qta2V5LW9uZS10ZXN0LWs=",
        ALLOWED_HOSTS="vectis.msp.example",
        SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres",
    )
    # Test-only switches (plain HTTP to the test server, browser tests) are not production.
    for name in (
        "SECURE_SSL_REDIRECT",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_HSTS_SECONDS",
        "DJANGO_ALLOW_ASYNC_UNSAFE",
    ):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_defaults_are_https_only_with_a_second_factor_and_idle_sessions() -> None:
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE, "
        "s.CSRF_COOKIE_SECURE, s.SECURE_PROXY_SSL_HEADER, s.SECURE_REDIRECT_EXEMPT, "
        "s.VECTIS_REQUIRE_MFA, s.SESSION_COOKIE_AGE, "
        "'access.sessions.IdleTimeoutMiddleware' in s.MIDDLEWARE)"
    )
    env = subprocess_env(
        DJANGO_SETTINGS_MODULE="vectis.settings",
        DEBUG="false",
        SECRET_KEY="x" * 60,
        VECTIS_ENCRYPTION_KEYS="dGVzdC1rZXktb25lLXRlc3Qta2V5LW9uZS10ZXN0LWs=",
        SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https",
    )
    for name in ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"):
        env.pop(name, None)
    env.pop("SECURE_HSTS_SECONDS", None)
    env.pop("VECTIS_REQUIRE_MFA", None)  # (the test settings switch it off)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, check=True
    ).stdout.strip()
    assert out.splitlines()[-1] == (
        "True 31536000 True True ('HTTP_X_FORWARDED_PROTO', 'https') ['^healthz$'] True 28800 True"
    )


# --- one Keepit account, one connection --------------------------------------------------


def keepit_form(name: str, **overrides: str) -> KeepitConnectionForm:
    data = {
        "name": name,
        "region": "us-dc",
        "account_guid": "y17hbi-i620pk-80q5x2",
        "username": "admin@msp.example",
        "password": "secret",
    }
    data.update(overrides)
    return KeepitConnectionForm(data=data)


@pytest.mark.django_db
def test_a_second_connection_to_the_same_keepit_account_is_refused_naming_the_first() -> None:
    first = keepit_form("Keepit US")
    assert first.is_valid(), first.errors
    saved = first.save()
    again = keepit_form("Keepit US (again)", keepit_url="", region="us-dc")
    assert not again.is_valid()
    assert again.non_field_errors() == [
        f"Keepit account y17hbi-i620pk-80q5x2 in region us-dc is already connected as "
        f"\u201cKeepit US\u201d (ID {saved.pk}). Edit that connection instead of adding a "
        "second one: two would sync every connector twice."
    ]
    # Another region, or another account, is a different Keepit account.
    assert keepit_form("Keepit EU", region="de-fr").is_valid()
    assert keepit_form("Other", account_guid="zzzzzz-zzzzzz-zzzzzz").is_valid()
    # The existing connection can still be edited.
    edit = KeepitConnectionForm(
        data={
            "name": "Renamed",
            "region": "us-dc",
            "account_guid": "y17hbi-i620pk-80q5x2",
            "username": "admin@msp.example",
        },
        instance=KeepitConnection.objects.get(pk=saved.pk),
    )
    assert edit.is_valid(), edit.errors
