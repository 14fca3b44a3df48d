"""End to end: a sandbox sync, an evaluation, and real SMTP to a local server (aiosmtpd)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from pytest_django.fixtures import Settings

from alerts import services
from alerts.models import AlertNotification
from backups.runner import run_sync
from keepit_sandbox import KeepitSandbox
from tests.conftest import sandbox_connection
from tests.factories import FailedRuleFactory, StaleRuleFactory
from tests.mail import Inbox, SmtpServer


def synced_sandbox(sandbox: KeepitSandbox, settings: Settings) -> None:
    settings.KEEPIT_BASE_URL_TEMPLATE = sandbox.base_url_template
    connection = sandbox_connection(sandbox)
    run = run_sync(connection, now=sandbox.clock.now_datetime())
    assert run.outcome == "succeeded", run.error


@pytest.mark.django_db
def test_alerts_after_a_sandbox_sync_arrive_over_real_smtp(
    sandbox: KeepitSandbox, settings: Settings, smtp: SmtpServer
) -> None:
    synced_sandbox(sandbox, settings)
    StaleRuleFactory.create(name="Stale", recipients="tech@msp.example")
    FailedRuleFactory.create(name="Failed", recipients="tech@msp.example")
    result = services.evaluate(now=sandbox.clock.now_datetime())
    assert result.opened
    assert result.sent == 1
    assert len(smtp.inbox.messages) == 1
    message = smtp.inbox.messages[0]
    assert message["To"] == "tech@msp.example"
    assert str(message["Subject"]).strip().startswith("[Vectis] ")
    assert message.is_multipart()
    types = [part.get_content_type() for part in message.walk()]
    assert "text/plain" in types
    assert "text/html" in types
    plain = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    text = plain.get_content()  # type: ignore[attr-defined]
    assert "Last successful backup:" in text
    assert "Keepit says:" in text


@pytest.mark.django_db
def test_an_email_held_while_smtp_is_down_is_delivered_once_when_it_returns(
    sandbox: KeepitSandbox, settings: Settings, smtp: SmtpServer
) -> None:
    synced_sandbox(sandbox, settings)
    StaleRuleFactory.create(name="Stale", recipients="tech@msp.example")
    now = sandbox.clock.now_datetime()
    smtp.stop()
    result = services.evaluate(now=now)
    assert (result.sent, result.failed) == (0, 1)
    notification = AlertNotification.objects.get()
    assert notification.status == AlertNotification.Status.PENDING
    assert notification.error
    # An hour of outage: every retry fails, nothing is lost.
    for minutes in (1, 3, 7, 15, 31, 61):
        services.send_due(now=now + timedelta(minutes=minutes))
    assert AlertNotification.objects.get().status == AlertNotification.Status.PENDING
    smtp.start()
    assert services.send_due(now=now + timedelta(minutes=120)) == (1, 0)
    assert services.send_due(now=now + timedelta(minutes=180)) == (0, 0)
    assert len(smtp.inbox.messages) == 1
    assert str(smtp.inbox.messages[0]["Subject"]).strip() == notification.subject
    assert AlertNotification.objects.get().status == AlertNotification.Status.SENT


class Refusing(Inbox):
    """An SMTP server that refuses some recipients: 550 for good, 451 for now."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.startswith("gone@"):
            return "550 5.1.1 <gone@msp.example>: Recipient address rejected: User unknown"
        if address.startswith("busy@"):
            return "451 4.3.0 Mailbox temporarily unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if any(address.startswith("filtered@") for address in envelope.rcpt_tos):
            return "554 5.7.1 Message rejected: looks like spam"
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def refusing_smtp(smtp: SmtpServer) -> SmtpServer:
    smtp.stop()
    smtp.inbox = Refusing()
    smtp.start()
    return smtp


@pytest.mark.django_db
def test_a_permanent_refusal_fails_the_delivery_at_once_with_the_servers_sentence(
    sandbox: KeepitSandbox, settings: Settings, refusing_smtp: SmtpServer
) -> None:
    synced_sandbox(sandbox, settings)
    StaleRuleFactory.create(name="Stale", recipients="gone@msp.example, tech@msp.example")
    now = sandbox.clock.now_datetime()
    result = services.evaluate(now=now)
    assert (result.sent, result.failed) == (1, 1)
    gone = AlertNotification.objects.get(recipient="gone@msp.example")
    assert gone.status == AlertNotification.Status.FAILED
    assert gone.attempts == 1
    assert gone.error == (
        "The mail server refused the recipient: 550 5.1.1 <gone@msp.example>: Recipient "
        "address rejected: User unknown"
    )
    # Never tried again.
    assert services.send_due(now=now + timedelta(hours=2)) == (0, 0)
    assert AlertNotification.objects.get(pk=gone.pk).attempts == 1
    assert [m["To"] for m in refusing_smtp.inbox.messages] == ["tech@msp.example"]
    # And it shows on the admin home.
    client = Client()
    client.force_login(User.objects.create_superuser("root", "r@x.example", "x"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("django.utils.timezone.now", lambda: now)
        home = client.get("/admin/").content.decode()
    assert "1 alert message could not be delivered in the last 7 days." in home


@pytest.mark.django_db
def test_temporary_refusals_retry_with_backoff_up_to_the_cap_then_fail_visibly(
    sandbox: KeepitSandbox, settings: Settings, refusing_smtp: SmtpServer
) -> None:
    settings.VECTIS_EMAIL_MAX_ATTEMPTS = 4
    synced_sandbox(sandbox, settings)
    StaleRuleFactory.create(name="Stale", recipients="busy@msp.example")
    now = sandbox.clock.now_datetime()
    services.evaluate(now=now)
    busy = AlertNotification.objects.get()
    assert busy.status == AlertNotification.Status.PENDING
    assert (
        busy.error
        == "The mail server refused the recipient: 451 4.3.0 Mailbox temporarily unavailable"
    )
    moments = [now + timedelta(minutes=m) for m in (1, 3, 7)]
    for moment in moments:
        services.send_due(now=moment)
    busy.refresh_from_db()
    assert busy.status == AlertNotification.Status.FAILED
    assert busy.attempts == 4
    assert busy.error.startswith("Gave up after 4 attempts over less than an hour: ")
    assert busy.failed_at == moments[-1]
    # Visibly: on the admin home, and in the delivery log with the server's sentence.
    client = Client()
    client.force_login(User.objects.create_superuser("root", "r@x.example", "x"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("django.utils.timezone.now", lambda: moments[-1])
        home = client.get("/admin/").content.decode()
        log = client.get("/admin/alerts/alertnotification/").content.decode()
    assert "1 alert message could not be delivered in the last 7 days." in home
    assert "busy@msp.example" in log
    assert "Mailbox temporarily unavailable" in log


@pytest.mark.django_db
def test_a_message_is_given_up_after_a_day_of_temporary_failures(
    sandbox: KeepitSandbox, settings: Settings, refusing_smtp: SmtpServer
) -> None:
    synced_sandbox(sandbox, settings)
    StaleRuleFactory.create(name="Stale", recipients="busy@msp.example")
    now = sandbox.clock.now_datetime()
    services.evaluate(now=now)
    services.send_due(now=now + timedelta(hours=23))
    assert AlertNotification.objects.get().status == AlertNotification.Status.PENDING
    services.send_due(now=now + timedelta(hours=24, minutes=1))
    failed = AlertNotification.objects.get()
    assert failed.status == AlertNotification.Status.FAILED
    assert failed.error.startswith("Gave up after 3 attempts over 24 hours: ")


@pytest.mark.django_db
def test_a_message_refused_for_good_after_its_content_is_sent_is_not_retried(
    sandbox: KeepitSandbox, settings: Settings, refusing_smtp: SmtpServer
) -> None:
    synced_sandbox(sandbox, settings)
    StaleRuleFactory.create(name="Stale", recipients="filtered@msp.example")
    now = sandbox.clock.now_datetime()
    services.evaluate(now=now)
    filtered = AlertNotification.objects.get()
    assert filtered.status == AlertNotification.Status.FAILED
    assert filtered.error == "The mail server answered 554 5.7.1 Message rejected: looks like spam"
    assert services.send_due(now=now + timedelta(hours=1)) == (0, 0)


class LockedOut(Inbox):
    """An SMTP server that refuses our sign-in (a wrong SMTP password in EMAIL_URL)."""

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        return "530 5.7.0 Authentication required"


@pytest.mark.django_db
def test_a_refusal_of_our_own_configuration_is_retried_not_dropped(
    sandbox: KeepitSandbox, settings: Settings, smtp: SmtpServer
) -> None:
    """A 5xx about us (not signed in, sender refused) would fail every message for good:
    it is retried like an outage, and delivered once the configuration is fixed."""
    synced_sandbox(sandbox, settings)
    StaleRuleFactory.create(name="Stale", recipients="tech@msp.example")
    smtp.stop()
    inbox = smtp.inbox
    smtp.inbox = LockedOut()
    smtp.start()
    now = sandbox.clock.now_datetime()
    services.evaluate(now=now)
    held = AlertNotification.objects.get()
    assert held.status == AlertNotification.Status.PENDING
    assert held.error.startswith("The mail server answered 530 5.7.0 Authentication required")
    smtp.stop()
    smtp.inbox = inbox
    smtp.start()
    assert services.send_due(now=now + timedelta(minutes=2)) == (1, 0)
    assert AlertNotification.objects.get().status == AlertNotification.Status.SENT
