"""Admin → Integrations → Keepit: the form, secrets at rest, Test connection, cards."""

from __future__ import annotations

import time
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.db import connection as db_connection
from django.test import Client
from django.urls import reverse
from pytest_django.fixtures import Settings as SettingsWrapper

from integrations.crypto import decrypt_secrets, encrypt_secrets
from integrations.models import Connection
from keepit.forms import KeepitConnectionForm, parse_keepit_url
from keepit.models import KeepitConnection
from keepit_sandbox import KeepitSandbox

PASSWORD = "Pa55word-%+,?)=$@-in-clear"
TOKEN_PASSWORD = "Tok3n-%+,?)=$@-secret"
ADD_URL = "/admin/keepit/keepitconnection/add/"

pytestmark = pytest.mark.django_db


def form_data(**overrides: str) -> dict[str, str]:
    data = {
        "name": "Keepit US",
        "enabled": "on",
        "keepit_url": "",
        "region": "us-dc",
        "account_guid": "y17hbi-i620pk-80q5x2",
        "username": "admin@msp.example",
        "password": PASSWORD,
        "token_login": "",
        "token_password": "",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


@pytest.fixture
def admin_client_logged_in(client: Client, admin_user: User) -> Client:
    client.force_login(admin_user)
    return client


def create_connection(client: Client, **overrides: str) -> KeepitConnection:
    response = client.post(ADD_URL, form_data(**overrides))
    assert response.status_code == 302, response.content.decode()[:3000]
    return KeepitConnection.objects.get()


def test_the_password_is_not_stored_in_clear(admin_client_logged_in: Client) -> None:
    connection = create_connection(
        admin_client_logged_in, token_login="tok", token_password=TOKEN_PASSWORD
    )
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT * FROM integration_connections WHERE id = %s", [connection.pk])
        row = " ".join(str(value) for value in cursor.fetchone())
    assert PASSWORD not in row
    assert TOKEN_PASSWORD not in row
    assert connection.secrets == {"password": PASSWORD, "token_password": TOKEN_PASSWORD}
    assert connection.config["username"] == "admin@msp.example"


def test_the_change_page_never_contains_a_stored_secret(admin_client_logged_in: Client) -> None:
    connection = create_connection(
        admin_client_logged_in, token_login="tok", token_password=TOKEN_PASSWORD
    )
    html = admin_client_logged_in.get(
        reverse("admin:keepit_keepitconnection_change", args=[connection.pk])
    ).content.decode()
    assert PASSWORD not in html
    assert TOKEN_PASSWORD not in html
    assert connection.secrets_ciphertext not in html
    assert "stored — leave blank to keep" in html
    assert "Clear the stored password" in html


def test_a_blank_secret_keeps_the_stored_one_and_clear_removes_it(
    admin_client_logged_in: Client,
) -> None:
    connection = create_connection(
        admin_client_logged_in, token_login="tok", token_password=TOKEN_PASSWORD
    )
    url = reverse("admin:keepit_keepitconnection_change", args=[connection.pk])
    response = admin_client_logged_in.post(
        url, form_data(password="", token_login="tok", token_password="", name="Renamed")
    )
    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.name == "Renamed"
    assert connection.secrets == {"password": PASSWORD, "token_password": TOKEN_PASSWORD}
    response = admin_client_logged_in.post(
        url, form_data(password="", token_login="", token_password="", clear_token_password="on")
    )
    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.secrets == {"password": PASSWORD}


def test_the_admin_history_names_changed_fields_without_values(
    admin_client_logged_in: Client,
) -> None:
    connection = create_connection(admin_client_logged_in)
    url = reverse("admin:keepit_keepitconnection_change", args=[connection.pk])
    admin_client_logged_in.post(url, form_data(password="N3w-" + PASSWORD))
    messages = " ".join(entry.get_change_message() for entry in LogEntry.objects.all())
    assert "Password" in messages
    assert PASSWORD not in messages
    assert "N3w-" not in messages


@pytest.mark.parametrize(
    "region", ["evil.example/x", "us-dc.attacker.com#", "..", "us dc", " us-dc x", "a", "x" * 33]
)
def test_regions_that_could_change_the_host_are_rejected(region: str) -> None:
    form = KeepitConnectionForm(data=form_data(region=region))
    assert not form.is_valid()
    assert "region" in form.errors


def test_known_and_well_formed_regions_are_accepted() -> None:
    for region in ("us-dc", "ws", "ch-zh", "eu-new-1"):
        form = KeepitConnectionForm(data=form_data(region=region))
        assert form.is_valid(), form.errors


@pytest.mark.parametrize("guid", ["abc/def", "abc def", "abc..", "x" * 101, "ab<c"])
def test_account_guids_with_other_characters_are_rejected(guid: str) -> None:
    form = KeepitConnectionForm(data=form_data(account_guid=guid))
    assert not form.is_valid()
    assert "account_guid" in form.errors


def test_a_half_filled_token_pair_is_a_clear_error() -> None:
    form = KeepitConnectionForm(data=form_data(token_login="tok", token_password=""))
    assert not form.is_valid()
    assert form.non_field_errors() == [
        "Fill both API token fields or neither: API token password is missing."
    ]
    form = KeepitConnectionForm(data=form_data(token_login="", token_password="x"))
    assert not form.is_valid()
    assert "API token login is missing" in form.non_field_errors()[0]


def test_credentials_are_required() -> None:
    form = KeepitConnectionForm(data=form_data(username="", password=""))
    assert not form.is_valid()
    assert form.non_field_errors() == [
        "Fill Username and Password, or both API token fields (recommended)."
    ]
    assert KeepitConnectionForm(
        data=form_data(username="", password="", token_login="t", token_password="p")
    ).is_valid()


def test_a_pasted_keepit_url_fills_region_and_account_guid() -> None:
    assert parse_keepit_url("https://us-dc.keepit.com/users/y17hbi-i620pk-80q5x2") == (
        "us-dc",
        "y17hbi-i620pk-80q5x2",
    )
    form = KeepitConnectionForm(
        data=form_data(
            region="",
            account_guid="",
            keepit_url=" https://de-fr.keepit.com/users/abc123-def456-ghi789/connectors ",
        )
    )
    assert form.is_valid(), form.errors
    assert form.config_values()["region"] == "de-fr"
    assert form.config_values()["account_guid"] == "abc123-def456-ghi789"
    bad = KeepitConnectionForm(data=form_data(keepit_url="https://evil.example/users/abc"))
    assert not bad.is_valid()
    assert "keepit_url" in bad.errors


def test_saving_an_enabled_connection_makes_it_due(admin_client_logged_in: Client) -> None:
    connection = create_connection(admin_client_logged_in, enabled="")
    from django.utils import timezone

    Connection.objects.filter(pk=connection.pk).update(next_sync_at=timezone.now())
    url = reverse("admin:keepit_keepitconnection_change", args=[connection.pk])
    admin_client_logged_in.post(url, form_data(password="", enabled="on"))
    connection.refresh_from_db()
    assert connection.enabled
    assert connection.next_sync_at is None


def test_sync_now_queues_a_sync_that_a_worker_runs(
    admin_client_logged_in: Client,
    sandbox_settings: KeepitSandbox,
    settings: SettingsWrapper,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Sync now queues the task after commit; run in the worker's stead (eagerly), it
    syncs the connection, part by part, as a manual run and leaves the schedule alone."""
    from integrations.models import SyncRun

    settings.CELERY_TASK_ALWAYS_EAGER = True
    connection = create_connection(admin_client_logged_in, **sandbox_form(sandbox_settings))
    Connection.objects.filter(pk=connection.pk).update(next_sync_at=None)
    url = reverse("admin:keepit_keepitconnection_sync", args=[connection.pk])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client_logged_in.post(url, form_data())
    assert response.status_code == 302
    assert not SyncRun.objects.exists()  # nothing runs before the commit
    assert len(callbacks) == 1
    # The worker's task queues the sync's parts after its own commit; they run too.
    with django_capture_on_commit_callbacks(execute=True):
        callbacks[0]()
    run = SyncRun.objects.get()
    assert (run.connection_id, run.trigger, run.outcome) == (connection.pk, "manual", "succeeded")


def test_rotation_reencrypts_and_old_keys_still_decrypt_before(settings: SettingsWrapper) -> None:
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.VECTIS_ENCRYPTION_KEYS = [old_key]
    connection = Connection.objects.create(provider="keepit", name="c")
    connection.set_secrets({"password": PASSWORD})
    connection.save()
    old_token = connection.secrets_ciphertext
    settings.VECTIS_ENCRYPTION_KEYS = [new_key, old_key]
    assert Connection.objects.get().secrets == {"password": PASSWORD}  # old key still decrypts
    call_command("rotate_encryption_keys", stdout=None)
    rotated = Connection.objects.get().secrets_ciphertext
    assert rotated != old_token
    settings.VECTIS_ENCRYPTION_KEYS = [new_key]
    assert decrypt_secrets(rotated) == {"password": PASSWORD}
    settings.VECTIS_ENCRYPTION_KEYS = [old_key]
    with pytest.raises(Exception, match="cannot be decrypted"):
        decrypt_secrets(rotated)
    assert encrypt_secrets({}) == ""


def test_connection_repr_holds_no_secrets() -> None:
    connection = Connection(provider="keepit", name="c", config={"username": "u"})
    connection.set_secrets({"password": PASSWORD})
    assert PASSWORD not in repr(connection)
    assert connection.secrets_ciphertext not in repr(connection)


# --- Test connection ---------------------------------------------------------------------


def post_test(
    client: Client, url: str = "/admin/keepit/keepitconnection/test/", **data: str
) -> Any:
    response = client.post(url, form_data(**data))
    return response


@pytest.fixture
def sandbox_settings(settings: SettingsWrapper, sandbox: KeepitSandbox) -> KeepitSandbox:
    settings.KEEPIT_BASE_URL_TEMPLATE = sandbox.base_url_template
    return sandbox


def sandbox_form(sandbox: KeepitSandbox, **overrides: str) -> dict[str, str]:
    values = {
        "account_guid": sandbox.msp.parent.guid,
        "username": sandbox.config.username,
        "password": sandbox.config.password,
    }
    values.update(overrides)
    return values


def test_test_connection_counts_the_customer_accounts(
    admin_client_logged_in: Client, sandbox_settings: KeepitSandbox
) -> None:
    sandbox = sandbox_settings
    body = post_test(admin_client_logged_in, **sandbox_form(sandbox)).json()
    assert body["ok"] is True
    assert body["message"] == (
        f"Connected to Keepit (us-dc). 8 customer accounts visible under {sandbox.msp.parent.guid}."
    )
    assert body["credential_kind"] == "username_password"
    assert body["details"] == [f"Signed in with the username {sandbox.config.username}."]
    assert "dedicated API token" in body["warnings"][0]


def test_test_connection_uses_the_token_pair_when_both_are_filled(
    admin_client_logged_in: Client, sandbox_settings: KeepitSandbox
) -> None:
    sandbox = sandbox_settings
    body = post_test(
        admin_client_logged_in,
        **sandbox_form(
            sandbox,
            password="wrong",
            token_login=sandbox.config.token_login,
            token_password=sandbox.config.token_password,
        ),
    ).json()
    assert body["ok"] is True
    assert body["credential_kind"] == "api_token"
    assert body["details"] == [f"Signed in with the API token {sandbox.config.token_login}."]
    assert body["warnings"] == []


def test_test_connection_uses_stored_secrets_for_blank_fields(
    admin_client_logged_in: Client, sandbox_settings: KeepitSandbox
) -> None:
    sandbox = sandbox_settings
    connection = create_connection(admin_client_logged_in, **sandbox_form(sandbox))
    url = reverse("admin:keepit_keepitconnection_test", args=[connection.pk])
    body = post_test(admin_client_logged_in, url, **sandbox_form(sandbox, password="")).json()
    assert body["ok"] is True


@pytest.mark.parametrize(
    ("overrides", "sentence"),
    [
        ({"password": "wrong"}, "Keepit refused the username or password in region us-dc."),
        ({"region": "de-fr"}, "Keepit refused the username or password in region de-fr."),
        (
            {"account_guid": "zzzzzz-zzzzzz-zzzzzz"},
            "The account GUID zzzzzz-zzzzzz-zzzzzz is not visible to these credentials.",
        ),
    ],
)
def test_test_connection_failures_are_one_specific_sentence(
    admin_client_logged_in: Client,
    sandbox_settings: KeepitSandbox,
    overrides: dict[str, str],
    sentence: str,
) -> None:
    body = post_test(admin_client_logged_in, **sandbox_form(sandbox_settings, **overrides)).json()
    assert body["ok"] is False
    assert body["message"].startswith(sentence)
    assert "Traceback" not in body["message"]


def test_test_connection_sends_the_credentials_to_the_configured_region_only(
    admin_client_logged_in: Client, sandbox_settings: KeepitSandbox
) -> None:
    sandbox = sandbox_settings
    body = post_test(admin_client_logged_in, **sandbox_form(sandbox, region="de-fr")).json()
    assert body["ok"] is False
    assert body["message"].endswith("if it may live in another one, press Find my region.")
    assert body["suggest_find_region"] is True
    # Only de-fr was asked: no other Keepit region saw these credentials.
    assert dict(sandbox.server.regions) == {"de-fr": 1}


def test_find_my_region_asks_each_known_region_once_and_names_the_right_one(
    admin_client_logged_in: Client, sandbox_settings: KeepitSandbox
) -> None:
    from keepit.client import KNOWN_REGIONS

    sandbox = sandbox_settings
    url = reverse("admin:keepit_keepitconnection_find_region_new")
    body = post_test(admin_client_logged_in, url, **sandbox_form(sandbox, region="")).json()
    assert body == {
        "ok": True,
        "region": "us-dc",
        "message": "These credentials work in region us-dc (USA (Washington DC)). Region is "
        "now set to us-dc: press Test connection, then Save.",
    }
    assert dict(sandbox.server.regions) == dict.fromkeys(KNOWN_REGIONS, 1)
    wrong = post_test(admin_client_logged_in, url, **sandbox_form(sandbox, password="wrong")).json()
    assert wrong["ok"] is False
    assert wrong["message"].startswith("No Keepit region accepts these credentials")


def test_the_connection_page_offers_find_my_region(admin_client_logged_in: Client) -> None:
    html = admin_client_logged_in.get(ADD_URL).content.decode()
    assert 'id="keepit-region-button"' in html
    assert reverse("admin:keepit_keepitconnection_find_region_new") in html


def test_test_connection_reports_a_timeout_within_the_configured_timeout(
    admin_client_logged_in: Client, sandbox_settings: KeepitSandbox, settings: SettingsWrapper
) -> None:
    settings.KEEPIT_READ_TIMEOUT = 1.0
    sandbox_settings.inject("hang:5")
    started = time.monotonic()
    body = post_test(admin_client_logged_in, **sandbox_form(sandbox_settings)).json()
    elapsed = time.monotonic() - started
    assert body["ok"] is False
    assert body["message"].startswith("Keepit did not answer in time (region us-dc).")
    assert elapsed < 2.5


def test_test_connection_reports_unexpected_answers(
    admin_client_logged_in: Client, sandbox_settings: KeepitSandbox
) -> None:
    sandbox_settings.inject("malformed")
    body = post_test(admin_client_logged_in, **sandbox_form(sandbox_settings)).json()
    assert body["message"].startswith("Unexpected answer from Keepit (region us-dc)")


def test_test_connection_explains_invalid_fields_before_calling_keepit(
    admin_client_logged_in: Client,
) -> None:
    body = post_test(admin_client_logged_in, region="evil.example/x").json()
    assert body["ok"] is False
    assert body["message"].startswith("Region: Enter a Keepit region")


def test_test_connection_needs_permission(client: Client, sandbox_settings: KeepitSandbox) -> None:
    staff = User.objects.create_user("tech", password="pw", is_staff=True)
    client.force_login(staff)
    response = post_test(client, **sandbox_form(sandbox_settings))
    assert response.status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="add_keepitconnection"))
    staff = User.objects.get(pk=staff.pk)
    client.force_login(staff)
    assert post_test(client, **sandbox_form(sandbox_settings)).json()["ok"] is True


def test_test_connection_is_post_only_and_csrf_protected(
    admin_user: User, sandbox_settings: KeepitSandbox
) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.get("/admin/keepit/keepitconnection/test/").status_code == 405
    response = client.post("/admin/keepit/keepitconnection/test/", form_data())
    assert response.status_code == 403


def test_staff_without_permission_cannot_see_connections(client: Client) -> None:
    staff = User.objects.create_user("viewer", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get("/admin/keepit/keepitconnection/").status_code == 403
    page = client.get("/admin/integrations/").content.decode()
    assert "Ask an administrator for access to configure Keepit" in page


# --- Admin → Integrations cards ------------------------------------------------------------


def card_state(client: Client) -> str:
    html = client.get("/admin/integrations/").content.decode()
    marker = 'data-testid="state">'
    return html[html.index(marker) + len(marker) :].split("<", 1)[0]


def test_the_keepit_card_shows_the_state_of_its_connections(
    admin_client_logged_in: Client,
) -> None:
    from django.utils import timezone

    assert card_state(admin_client_logged_in) == "Not configured"
    html = admin_client_logged_in.get("/admin/integrations/").content.decode()
    assert 'href="/admin/keepit/keepitconnection/add/"' in html
    assert "Configure" in html
    connection = create_connection(admin_client_logged_in)
    assert card_state(admin_client_logged_in) == "Enabled"
    now = timezone.now()
    Connection.objects.filter(pk=connection.pk).update(last_error="x", last_error_at=now)
    assert card_state(admin_client_logged_in) == "Failing"
    Connection.objects.filter(pk=connection.pk).update(enabled=False)
    assert card_state(admin_client_logged_in) == "Disabled"


def test_error_reports_never_show_secrets(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected error inside Test connection or the form: the admin gets a sentence,
    and the report Django would e-mail to admins (frames with their local variables,
    here built from the logged exception) holds no secret."""
    import logging
    import sys

    from django.views.debug import ExceptionReporter

    from keepit.connection import KeepitConnectionSettings
    from keepit.provider import KeepitProvider

    def explode(self: Any, **overrides: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(KeepitConnectionSettings, "client", explode)

    # Secrets are passed as temporaries so that only the code under test holds them in
    # local variables (the report also shows this test's frames).
    with caplog.at_level(logging.ERROR, logger="keepit.provider"):
        result = KeepitProvider().test_connection(
            config={"region": "us-dc", "account_guid": "g", "username": "u", "token_login": "t"},
            secrets={"password": PASSWORD, "token_password": TOKEN_PASSWORD},
        )
    assert result.ok is False
    assert result.message.startswith(
        "The test stopped on an unexpected error (RuntimeError). Nothing was changed."
    )
    logged = [r for r in caplog.records if r.exc_info]
    assert len(logged) == 1
    exc_info = logged[0].exc_info
    assert exc_info is not None
    reports = [ExceptionReporter(None, *exc_info).get_traceback_html()]

    def store_unserialisable_secret() -> None:
        Connection(provider="keepit").set_secrets(
            {"password": PASSWORD, "broken": object()}  # type: ignore[dict-item]
        )

    try:
        store_unserialisable_secret()
    except Exception:
        reports.append(ExceptionReporter(None, *sys.exc_info()).get_traceback_html())
    assert len(reports) == 2
    for report in reports:
        assert "RuntimeError" in report or "TypeError" in report
        assert PASSWORD not in report
        assert TOKEN_PASSWORD not in report
    assert PASSWORD not in caplog.text


def test_the_connection_page_shows_its_state_and_recent_runs(
    admin_client_logged_in: Client, sandbox_settings: KeepitSandbox
) -> None:
    from backups.runner import run_sync

    sandbox = sandbox_settings
    connection = create_connection(admin_client_logged_in, **sandbox_form(sandbox))
    url = reverse("admin:keepit_keepitconnection_change", args=[connection.pk])
    assert "No sync has run yet." in admin_client_logged_in.get(url).content.decode()
    run_sync(connection, now=sandbox.clock.now_datetime())
    connection.set_secrets({"password": "wrong"})
    connection.save()
    failed = run_sync(connection, now=sandbox.clock.now_datetime())
    html = admin_client_logged_in.get(url).content.decode()
    assert "Last successful sync:" in html
    assert html.count('<td><span class="vx-badge') == 2  # two runs listed
    assert ">Succeeded<" in html
    assert ">Failed<" in html
    assert failed.error.startswith("Keepit refused the credentials")
    assert "Last error" in html
    assert failed.error.split(":")[0] in html


def test_secrets_never_reach_the_logs(
    admin_client_logged_in: Client,
    sandbox_settings: KeepitSandbox,
    settings: SettingsWrapper,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from backups.runner import run_sync

    sandbox = sandbox_settings
    settings.KEEPIT_RETRY_BUDGET_SECONDS = 5
    caplog.set_level("DEBUG")
    values = sandbox_form(
        sandbox,
        token_login=sandbox.config.token_login,
        token_password=sandbox.config.token_password,
    )
    post_test(admin_client_logged_in, **values)
    connection = create_connection(admin_client_logged_in, **values)
    sandbox.inject("503", "429", "drop")  # retries are logged
    run_sync(connection, now=sandbox.clock.now_datetime())
    post_test(admin_client_logged_in, **sandbox_form(sandbox, password="Wr0ng-" + PASSWORD))
    assert "retry" in caplog.text
    for secret in (sandbox.config.password, sandbox.config.token_password, PASSWORD):
        assert secret not in caplog.text
