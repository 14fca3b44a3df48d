"""The built-in account and credential alerts, end to end against the sandbox: a seat
limit exceeded with its grace countdown, an account scheduled for deletion, an API token
that expires soon; and the error code's "How to fix" link in the alert and its e-mail."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from alerts.models import Alert, AlertEvent, AlertNotification, AlertRule
from alerts.services import evaluate
from backups.models import AccountLink, AccountSeat, BackupConnector, BackupConnectorStatus
from customers.models import Customer
from integrations.models import Connection
from keepit.fixes import REAUTHENTICATE, REAUTHENTICATE_M365
from tests.conftest import START, connect, make_sandbox, sync

pytestmark = pytest.mark.django_db


@pytest.fixture
def msp_sandbox() -> Any:
    sandbox = make_sandbox(own_read_audit=False)
    yield sandbox
    sandbox.stop()


@pytest.fixture
def watcher(db: None) -> AlertRule:
    """Someone who receives the built-in alerts (they go to the rules' recipients)."""
    return AlertRule.objects.create(
        name="Stale", kind=AlertRule.Kind.BACKUP_STALE, recipients="noc@msp.example"
    )


def events(alert: Alert, kind: str) -> int:
    return AlertEvent.objects.filter(alert=alert, kind=kind).count()


def test_a_seat_violation_alerts_with_its_grace_countdown(
    msp_sandbox: Any, settings: Any, watcher: AlertRule
) -> None:
    settings.KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC = 0
    connection = connect(msp_sandbox, settings)
    account = msp_sandbox.msp.accounts[0]
    msp_sandbox.msp.clear_seat_violation(account.guid)
    sync(connection, msp_sandbox)
    evaluate(now=msp_sandbox.clock.now_datetime(), send=False)
    link = AccountLink.objects.get(external_id=account.guid)
    assert not Alert.objects.filter(account_link=link).exists()

    msp_sandbox.msp.set_seat_violation(
        account.guid, limit=100, usage=112, grace_expires=START + timedelta(days=10, hours=1)
    )
    msp_sandbox.advance(timedelta(minutes=15))
    sync(connection, msp_sandbox)
    seat = AccountSeat.objects.get(account_link=link, resource="m365-mailboxonedrive-total")
    assert (seat.usage, seat.limit, seat.violated, seat.overage) == (112, 100, True, 12)
    assert seat.grace_expires_at == START + timedelta(days=10, hours=1)
    result = evaluate(now=msp_sandbox.clock.now_datetime(), send=False)
    alert = Alert.objects.get(account_link=link, resolved_at__isnull=True)
    assert alert in result.opened
    assert alert.kind == Alert.Kind.SEAT_EXCEEDED
    assert "11 days of grace left" in alert.summary
    assert "112 used of 100 (over by 12)" in alert.detail
    # The customer's watchers get it.
    assert [n.recipient for n in result.notifications] == ["noc@msp.example"]

    # Four days on, a week is left: the step moves and the watchers hear once.
    msp_sandbox.advance(timedelta(days=4))
    sync(connection, msp_sandbox)
    evaluate(now=msp_sandbox.clock.now_datetime(), send=False)
    evaluate(now=msp_sandbox.clock.now_datetime() + timedelta(minutes=1), send=False)
    alert.refresh_from_db()
    assert "7 days of grace left" in alert.summary
    assert events(alert, AlertEvent.Kind.REMINDER) == 1

    msp_sandbox.msp.clear_seat_violation(account.guid)
    msp_sandbox.advance(timedelta(minutes=15))
    sync(connection, msp_sandbox)
    evaluate(now=msp_sandbox.clock.now_datetime(), send=False)
    alert.refresh_from_db()
    assert alert.resolved_at is not None
    assert not AccountSeat.objects.filter(account_link=link, violated=True).exists()


def test_an_account_scheduled_for_deletion_alerts_until_the_deletion_is_cancelled(
    msp_sandbox: Any, settings: Any, watcher: AlertRule
) -> None:
    settings.KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC = 0
    connection = connect(msp_sandbox, settings)
    AlertRule.objects.create(name="Failed", kind=AlertRule.Kind.BACKUP_FAILED, recipients="a@b.c")
    # An account with a connector that would alert (a revoked token) ...
    account = next(
        a
        for a in msp_sandbox.msp.accounts
        if any(c.scenario == "BADTOKEN" for c in msp_sandbox.msp.connectors[a.guid])
    )
    msp_sandbox.msp.schedule_account_deletion(account.guid, START + timedelta(days=20))
    sync(connection, msp_sandbox)
    link = AccountLink.objects.get(external_id=account.guid)
    assert link.deletion_scheduled_at == START + timedelta(days=20)
    evaluate(now=msp_sandbox.clock.now_datetime(), send=False)
    alert = Alert.objects.get(account_link=link, resolved_at__isnull=True)
    # ... alerts once, for the deletion; its connectors stay quiet meanwhile.
    assert not Alert.objects.filter(connector__account_link=link).exists()
    assert alert.kind == Alert.Kind.ACCOUNT_DELETION
    assert f"{START + timedelta(days=20):%Y-%m-%d}" in alert.summary
    assert "in 20 days" in alert.detail

    msp_sandbox.msp.schedule_account_deletion(account.guid, None)
    msp_sandbox.advance(timedelta(minutes=15))
    sync(connection, msp_sandbox)
    evaluate(now=msp_sandbox.clock.now_datetime(), send=False)
    link.refresh_from_db()
    alert.refresh_from_db()
    assert link.deletion_scheduled_at is None
    assert alert.resolved_at is not None


def test_a_token_expiring_in_six_days_alerts_once_and_resolves_when_renewed(
    msp_sandbox: Any, settings: Any, watcher: AlertRule
) -> None:
    settings.KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC = 0
    connection = connect(msp_sandbox, settings, token=True)
    login = msp_sandbox.config.token_login
    msp_sandbox.msp.set_token(login, expires=START + timedelta(days=6), lifetime=None)
    sync(connection, msp_sandbox)
    connection.refresh_from_db()
    assert connection.credential_kind == "api_token"
    assert connection.credential_expires_at == START + timedelta(days=6)
    assert connection.credential_last_used_at is not None
    result = evaluate(now=msp_sandbox.clock.now_datetime(), send=False)
    alert = Alert.objects.get(kind=Alert.Kind.TOKEN_EXPIRY, resolved_at__isnull=True)
    assert alert in result.opened
    assert alert.connection == connection
    assert "expires in 6 days" in alert.summary
    assert alert.stage == "7"
    # Further syncs and evaluations say nothing new.
    for _ in range(3):
        msp_sandbox.advance(timedelta(minutes=15))
        sync(connection, msp_sandbox)
        evaluate(now=msp_sandbox.clock.now_datetime(), send=False)
    assert events(alert, AlertEvent.Kind.OPENED) == 1
    assert events(alert, AlertEvent.Kind.REMINDER) == 0
    assert AlertNotification.objects.filter(events__alert=alert).count() == 1

    # Renewed, but with a short lifetime again: the old alert ends, a new one says so.
    msp_sandbox.msp.set_token(login, expires=START + timedelta(days=20), lifetime=None)
    msp_sandbox.advance(timedelta(minutes=15))
    sync(connection, msp_sandbox)
    evaluate(now=msp_sandbox.clock.now_datetime(), send=False)
    alert.refresh_from_db()
    assert alert.resolved_at is not None
    assert events(alert, AlertEvent.Kind.RESOLVED) == 1
    renewed = Alert.objects.get(kind=Alert.Kind.TOKEN_EXPIRY, resolved_at__isnull=True)
    assert "expires in 20 days" in renewed.summary

    # Renewed for a year: nothing is open.
    msp_sandbox.msp.set_token(login, expires=START + timedelta(days=365), lifetime=None)
    msp_sandbox.advance(timedelta(minutes=15))
    sync(connection, msp_sandbox)
    evaluate(now=msp_sandbox.clock.now_datetime(), send=False)
    assert not Alert.objects.filter(kind=Alert.Kind.TOKEN_EXPIRY, resolved_at__isnull=True)


def test_a_personal_login_connection_reads_its_user_and_says_so(
    msp_sandbox: Any, settings: Any
) -> None:
    settings.KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC = 0
    connection = connect(msp_sandbox, settings, token=False)
    sync(connection, msp_sandbox)
    connection = Connection.objects.get(pk=connection.pk)
    assert connection.credential_kind == "username_password"
    assert connection.credential_checked_at is not None
    # The Master Admin's own token has no expiry: nothing to warn about but the login
    # itself (the card and connection page say so, tests/vectis/test_depth_pages.py).
    assert connection.credential_expires_at is None
    AlertRule.objects.create(name="Stale", kind=AlertRule.Kind.BACKUP_STALE, recipients="a@b.c")
    evaluate(now=msp_sandbox.clock.now_datetime(), send=False)
    assert not Alert.objects.filter(kind=Alert.Kind.TOKEN_EXPIRY).exists()


def test_the_error_code_and_its_article_reach_the_alert_and_the_email(
    msp_sandbox: Any, settings: Any
) -> None:
    settings.KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC = 0
    connection = connect(msp_sandbox, settings)
    AlertRule.objects.create(
        name="Failures",
        kind=AlertRule.Kind.BACKUP_FAILED,
        include_failed_jobs=False,
        recipients="noc@msp.example",
    )
    revoked = next(
        c
        for a in msp_sandbox.msp.accounts
        for c in msp_sandbox.msp.connectors[a.guid]
        if c.scenario == "BADTOKEN"
    )
    article = REAUTHENTICATE_M365 if revoked.type == "o365-admin" else REAUTHENTICATE
    sync(connection, msp_sandbox)
    status = BackupConnectorStatus.objects.get(connector__external_id=revoked.guid)
    assert (status.health, status.reason, status.error_code) == (
        "critical",
        "BADTOKEN",
        "E_REVOKED",
    )
    assert status.help_url == article
    assert status.help_label == "How to fix"
    assert "reauthenticate" in status.fix_text
    result = evaluate(now=msp_sandbox.clock.now_datetime(), send=False)
    connector = BackupConnector.objects.get(external_id=revoked.guid)
    alert = Alert.objects.get(connector=connector)
    assert "reauthenticate" in alert.detail
    message = result.notifications[0]
    assert f"How to fix: {article}" in message.body_text
    assert f'href="{article}"' in message.body_html


def test_an_excluded_account_loses_its_seat_alert_quietly(
    msp_sandbox: Any, settings: Any, watcher: AlertRule, django_capture_on_commit_callbacks: Any
) -> None:
    from backups.accounts import exclude_account

    settings.KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC = 0
    connection = connect(msp_sandbox, settings)
    account = msp_sandbox.msp.accounts[2]
    msp_sandbox.msp.set_seat_violation(account.guid, grace_expires=START + timedelta(days=3))
    sync(connection, msp_sandbox)
    evaluate(now=msp_sandbox.clock.now_datetime(), send=False)
    link = AccountLink.objects.get(external_id=account.guid)
    alert = Alert.objects.get(account_link=link)
    with django_capture_on_commit_callbacks(execute=True):
        exclude_account(link, by="admin")
    alert.refresh_from_db()
    assert alert.resolved_at is not None
    resolved = AlertEvent.objects.get(alert=alert, kind=AlertEvent.Kind.RESOLVED)
    assert resolved.notified_at is not None  # no "resolved" e-mail for a decision
    evaluate(now=msp_sandbox.clock.now_datetime(), send=False)
    assert not AlertNotification.objects.filter(events=resolved).exists()
    assert Customer.objects.exists()


def test_an_account_alert_of_a_deleted_account_ends_without_a_resolved_notice(
    msp_sandbox: Any, settings: Any, watcher: AlertRule
) -> None:
    settings.KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC = 0
    connection = connect(msp_sandbox, settings)
    account = msp_sandbox.msp.accounts[3]
    msp_sandbox.msp.schedule_account_deletion(account.guid, START + timedelta(days=2))
    sync(connection, msp_sandbox)
    evaluate(now=msp_sandbox.clock.now_datetime(), send=False)
    link = AccountLink.objects.get(external_id=account.guid)
    alert = Alert.objects.get(account_link=link)
    # Keepit deleted it: the next sync no longer lists it (marked removed, never deleted).
    AccountLink.objects.filter(pk=link.pk).update(removed_at=msp_sandbox.clock.now_datetime())
    evaluate(now=msp_sandbox.clock.now_datetime(), send=False)
    alert.refresh_from_db()
    assert alert.resolved_at is not None
    resolved = AlertEvent.objects.get(alert=alert, kind=AlertEvent.Kind.RESOLVED)
    assert "deleted" in resolved.note
    assert not AlertNotification.objects.filter(events=resolved).exists()  # no "resolved" mail
