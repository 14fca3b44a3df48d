"""Alerts where MSPs work: Teams, Slack and a generic webhook, delivered over real HTTP to
local receivers through the delivery log (issue "Alerts where MSPs work")."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core import mail
from django.db import connection, connections
from django.test import Client
from django.utils import timezone

from alerts import services
from alerts.models import Alert, AlertNotification, NotificationChannel, Severity
from tests.alerts.receivers import Receiver, start_receiver
from tests.factories import NOW, ConnectorFactory, CustomerFactory, StaleRuleFactory

pytestmark = pytest.mark.django_db

SECRET = "test-signing-secret"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = start_receiver()
    yield running
    running.stop()


@pytest.fixture
def tls_receiver() -> Iterator[Receiver]:
    running = start_receiver(tls=True)
    yield running
    running.stop()


def make_channel(kind: str, url: str, *, name: str = "", **fields: object) -> NotificationChannel:
    channel = NotificationChannel(name=name or f"{kind} channel", kind=kind, **fields)
    values = {"url": url}
    if kind == NotificationChannel.Kind.WEBHOOK:
        values["secret"] = SECRET
    channel.set_secrets(values)
    channel.save()
    return channel


def stale_alert_for(*channels: NotificationChannel, recipients: str = "") -> None:
    """A Backup Stale rule sending to these channels, and a connector it alerts on."""
    rule = StaleRuleFactory.create(recipients=recipients)
    rule.channels.set(channels)
    ConnectorFactory.create(
        customer=CustomerFactory.create(name="Contoso Ltd"),
        name="Contoso Mail",
        backup_status__last_success_at=NOW - timedelta(days=3),
    )


def test_a_webhook_gets_the_documented_json_signed_with_the_channels_secret(
    receiver: Receiver,
) -> None:
    hook = make_channel(NotificationChannel.Kind.WEBHOOK, f"{receiver.base}/psa/hook")
    stale_alert_for(hook)
    result = services.evaluate(now=NOW)
    assert (result.sent, result.failed) == (1, 0)
    (request,) = receiver.requests
    assert request.path == "/psa/hook"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Vectis-Event"] == "alerts"
    # The signature a receiver recomputes: HMAC-SHA256("<timestamp>.<raw body>").
    timestamp = request.headers["X-Vectis-Timestamp"]
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256)
    assert request.headers["X-Vectis-Signature"] == "sha256=" + expected.hexdigest()
    body = request.json()
    alert = Alert.objects.select_related("connector__customer", "connector__connection").get()
    connector = alert.connector
    assert connector is not None
    links = body["alerts"][0]["links"]
    base = "http://127.0.0.1:8000"
    assert links["acknowledge"].startswith(f"{base}/alerts/act/")
    assert links["snooze_4h"].startswith(f"{base}/alerts/act/")
    assert links["acknowledge"] != links["snooze_4h"]
    # The whole body, as the README documents it (version 1): nothing more, nothing less.
    assert body == {
        "version": 1,
        "type": "alerts",
        "sent_at": body["sent_at"],
        "subject": "[Vectis] 1 backup stale — Contoso Ltd: Contoso Mail",
        "text": body["text"],
        "alerts": [
            {
                "id": alert.pk,
                "event": "opened",
                "kind": "backup_stale",
                "kind_label": "Backup stale",
                "severity": "warning",
                "rule": {"id": alert.rule_id, "name": "Stale backups"},
                "customer": {"id": connector.customer_id, "name": "Contoso Ltd"},
                "connector": {"id": connector.pk, "name": "Contoso Mail", "kind": "m365"},
                "connection": {"id": connector.connection_id, "name": "Keepit US"},
                "summary": alert.summary,
                "reason": "",
                "detail": "No complete backup since 2026-11-23T12:00+00:00 (the rule allows 48 h).",
                "state": "open",
                "opened_at": "2026-11-26T12:00:00Z",
                "resolved_at": None,
                "acknowledged_at": None,
                "links": {
                    "alert": f"{base}/admin/alerts/alert/{alert.pk}/change/",
                    "acknowledge": links["acknowledge"],
                    "snooze_4h": links["snooze_4h"],
                },
            }
        ],
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["sent_at"])
    assert "Contoso Mail" in body["text"]
    assert links["acknowledge"] in body["text"]
    assert shape(body) == shape(documented_webhook_body())
    delivery = AlertNotification.objects.get(channel=hook)
    assert (delivery.status, delivery.purpose) == ("sent", "alerts")


def documented_webhook_body() -> object:
    """The JSON example of the README's "The generic webhook" section."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### The generic webhook", 1)[1]
    return json.loads(section.split("```json", 1)[1].split("```", 1)[0])


def shape(value: object) -> object:
    """The keys of a JSON value, all the way down (values dropped)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return None


def test_teams_and_slack_get_their_own_message_built_from_the_same_alert(
    tls_receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Teams through its Workflows webhook (an adaptive card), Slack through its
    incoming webhook (Slack's own JSON); both over https to the local receiver."""
    from apprise.plugins.slack import NotifySlack

    # Slack's webhook host is fixed in apprise: point it at the receiver (real HTTPS).
    monkeypatch.setattr(NotifySlack, "webhook_url", f"{tls_receiver.base}/services")
    teams = make_channel(
        NotificationChannel.Kind.TEAMS,
        f"workflows://127.0.0.1:{tls_receiver.port}/wf123/sig456?verify=no",
    )
    slack = make_channel(NotificationChannel.Kind.SLACK, "slack://T000/B000/XXXX?verify=no")
    stale_alert_for(teams, slack)
    result = services.evaluate(now=NOW)
    assert (result.sent, result.failed) == (2, 0)
    by_path = {r.path.split("?")[0]: r.json() for r in tls_receiver.requests}
    sent = {n.channel_id: n for n in AlertNotification.objects.all()}
    subject, text = sent[teams.pk].subject, sent[teams.pk].body_text
    assert subject == "[Vectis] 1 backup stale — Contoso Ltd: Contoso Mail"
    assert "Contoso Mail (Microsoft 365)" in text
    assert "Acknowledge: http://127.0.0.1:8000/alerts/act/" in text
    assert "Snooze 4 h: http://127.0.0.1:8000/alerts/act/" in text
    assert (sent[slack.pk].subject, sent[slack.pk].body_text) == (subject, text)
    text = text.rstrip()  # (apprise drops trailing blank lines)
    # Exactly what each service receives: our subject and text, no logo, no footer.
    assert by_path["/workflows/wf123/triggers/manual/paths/invoke"] == {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        {
                            "type": "TextBlock",
                            "text": subject,
                            "style": "heading",
                            "weight": "Bolder",
                            "size": "Large",
                            "id": "title",
                        },
                        {
                            "type": "TextBlock",
                            "text": text,
                            "style": "default",
                            "wrap": True,
                            "id": "body",
                        },
                    ],
                    "msteams": {"width": "full"},
                },
            }
        ],
    }
    assert by_path["/services/T000/B000/XXXX"] == {
        "mrkdwn": True,
        "attachments": [{"title": subject, "text": text, "color": "#3AA3E3"}],
    }


def chat_channel(
    kind: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> NotificationChannel:
    """A Teams or Slack channel whose service is the local HTTPS receiver."""
    from apprise.plugins.slack import NotifySlack

    if kind == NotificationChannel.Kind.SLACK:
        monkeypatch.setattr(NotifySlack, "webhook_url", f"{receiver.base}/services")
        return make_channel(kind, "slack://T000/B000/XXXX?verify=no")
    return make_channel(kind, f"workflows://127.0.0.1:{receiver.port}/wf123/sig456?verify=no")


@pytest.mark.parametrize("kind", ["teams", "slack"])
@pytest.mark.parametrize(("status", "retried"), [(410, False), (404, False), (503, True)])
def test_teams_and_slack_answers_say_whether_to_try_again(
    tls_receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    status: int,
    retried: bool,
) -> None:
    """The service's answer, as apprise reports it: a removed workflow or hook (404, 410)
    fails the message for good; a busy service (503) is tried again later."""
    channel = chat_channel(kind, tls_receiver, monkeypatch)
    stale_alert_for(channel)
    tls_receiver.answer(status)
    services.evaluate(now=NOW)
    delivery = AlertNotification.objects.get(channel=channel)
    label = channel.get_kind_display()
    assert delivery.error == f"{label} answered HTTP {status}"
    assert delivery.status == ("pending" if retried else "failed")
    services.send_due(now=NOW + timedelta(hours=1))
    delivery.refresh_from_db()
    assert delivery.status == ("sent" if retried else "failed")
    assert len(tls_receiver.requests) == (2 if retried else 1)


def test_a_very_long_message_is_shortened_for_chat_and_says_where_the_rest_is(
    tls_receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 connectors stale at once: the Teams card keeps the first lines, under the
    limit a workflow accepts, and links to the full list; e-mail keeps every line."""
    teams = chat_channel(NotificationChannel.Kind.TEAMS, tls_receiver, monkeypatch)
    StaleRuleFactory.create(recipients="noc@msp.example").channels.set([teams])
    customer = CustomerFactory.create(name="Contoso Ltd")
    for number in range(300):
        ConnectorFactory.create(
            customer=customer,
            name=f"Contoso mailbox {number:03}",
            backup_status__last_success_at=NOW - timedelta(days=3),
        )
    result = services.evaluate(now=NOW)
    assert (result.sent, result.failed) == (2, 0)
    (request,) = tls_receiver.requests
    card = request.json()["attachments"][0]["content"]["body"]
    text = "\n".join(str(block.get("text", "")) for block in card)
    assert "Contoso mailbox 000" in text
    assert "Contoso mailbox 299" not in text
    assert "shortened for chat" in text
    assert "/admin/alerts/alert/" in text
    assert len(request.body) < 40_000
    (email,) = mail.outbox
    assert "Contoso mailbox 299" in email.body


@pytest.mark.django_db(transaction=True)
def test_a_message_is_delivered_once_by_two_senders_after_three_503s(
    receiver: Receiver,
) -> None:
    hook = make_channel(NotificationChannel.Kind.WEBHOOK, f"{receiver.base}/hook")
    stale_alert_for(hook)
    services.evaluate(now=NOW, send=False)
    receiver.answer(503, 503, 503)
    moment = NOW

    def send(at: datetime, barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            services.send_due(now=at)
        finally:
            connections.close_all()

    for _ in range(8):
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=send, args=(moment, barrier)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        moment += timedelta(minutes=31)  # past any backoff
    delivery = AlertNotification.objects.get(channel=hook)
    assert delivery.status == AlertNotification.Status.SENT
    assert delivery.attempts == 4
    assert len(receiver.requests) == 4  # three refused, one delivered: never twice
    assert len({r.body for r in receiver.requests}) == 1


@pytest.mark.parametrize("status", [410, 404])
def test_a_hook_that_is_gone_fails_at_once(receiver: Receiver, status: int) -> None:
    hook = make_channel(NotificationChannel.Kind.WEBHOOK, f"{receiver.base}/gone")
    stale_alert_for(hook)
    receiver.answer(status)
    result = services.evaluate(now=NOW)
    assert (result.sent, result.failed) == (0, 1)
    delivery = AlertNotification.objects.get(channel=hook)
    assert delivery.status == AlertNotification.Status.FAILED
    assert delivery.attempts == 1
    assert delivery.error == f"The webhook answered HTTP {status}"
    assert services.send_due(now=NOW + timedelta(hours=2)) == (0, 0)  # never again
    assert len(receiver.requests) == 1


def messages_to(hook: NotificationChannel, count: int, *, at: datetime = NOW) -> None:
    """`count` messages waiting for the channel: one evaluation pass each, each opening
    one more stale-backup alert."""
    customer = CustomerFactory.create(name="Contoso Ltd")
    for number in range(count):
        ConnectorFactory.create(
            customer=customer,
            name=f"Contoso {number}",
            backup_status__last_success_at=at - timedelta(days=3),
        )
        services.evaluate(now=at + number * timedelta(seconds=1), send=False)
    assert AlertNotification.objects.filter(channel=hook).count() == count


def test_a_channel_that_fails_five_deliveries_in_a_row_disables_itself_and_says_so(
    receiver: Receiver,
) -> None:
    User.objects.create_superuser("boss", "boss@msp.example", "pw")
    hook = make_channel(NotificationChannel.Kind.WEBHOOK, f"{receiver.base}/gone")
    StaleRuleFactory.create(recipients="noc@msp.example").channels.set([hook])
    messages_to(hook, 6)
    receiver.answer(*[410] * 10)
    services.send_due(now=NOW + timedelta(minutes=1))
    hook.refresh_from_db()
    assert not hook.enabled
    assert hook.consecutive_failures == 5
    assert hook.disabled_reason.startswith("Disabled after 5 failed deliveries in a row")
    assert "HTTP 410" in hook.disabled_reason
    assert len(receiver.requests) == 5  # the sixth message waits for the channel
    statuses = AlertNotification.objects.filter(channel=hook).values_list("status", flat=True)
    assert sorted(statuses) == ["failed"] * 5 + ["pending"]
    # The admins are told by e-mail (the next sending pass) and on the admin home.
    services.send_due(now=NOW + timedelta(minutes=2))
    notice = [m for m in mail.outbox if m.to == ["boss@msp.example"]]
    assert len(notice) == 1
    assert "disabled itself" in notice[0].subject
    assert "Messages for it wait" in notice[0].body
    client = Client()
    client.force_login(User.objects.get(username="boss"))
    home = client.get("/admin/").content.decode()
    assert "disabled itself" in home
    assert hook.name in home
    assert len(receiver.requests) == 5


def test_an_outage_of_a_quarter_of_an_hour_neither_loses_a_message_nor_disables_the_channel(
    receiver: Receiver,
) -> None:
    hook = make_channel(NotificationChannel.Kind.WEBHOOK, f"{receiver.base}/busy")
    StaleRuleFactory.create(recipients="").channels.set([hook])
    messages_to(hook, 1)
    receiver.answer(*[503] * 6)
    for minutes in (0, 1, 3, 7, 15, 31, 63):
        services.send_due(now=NOW + timedelta(minutes=minutes))
    hook.refresh_from_db()
    assert hook.enabled
    assert hook.consecutive_failures == 0
    delivery = AlertNotification.objects.get(channel=hook)
    assert (delivery.status, delivery.attempts) == ("sent", 7)


def test_messages_wait_for_a_disabled_channel_and_go_when_it_is_enabled_again(
    receiver: Receiver, admin_client: Client
) -> None:
    hook = make_channel(NotificationChannel.Kind.WEBHOOK, f"{receiver.base}/hook")
    StaleRuleFactory.create(recipients="").channels.set([hook])
    messages_to(hook, 7)
    receiver.answer(*[404] * 5)
    services.send_due(now=NOW + timedelta(minutes=1))
    waiting = AlertNotification.objects.filter(channel=hook, status="pending").order_by("pk")
    assert waiting.count() == 2
    old = waiting.first()
    assert old is not None
    AlertNotification.objects.filter(pk=old.pk).update(created_at=NOW - timedelta(days=2))
    services.send_due(now=NOW + timedelta(hours=1))  # (the notice to the admins goes)
    assert len(receiver.requests) == 5  # disabled: its messages wait
    with time_machine.travel(NOW + timedelta(hours=2), tick=False):
        response = admin_client.post(
            f"/admin/alerts/notificationchannel/{hook.pk}/change/",
            {
                "name": hook.name,
                "kind": "webhook",
                "url": "",
                "addresses": "",
                "min_severity": Severity.WARNING,
                "enabled": "on",
                "digest_timezone": "",
            },
            follow=True,
        )
    assert "1 message(s) that waited more than 24 hours" in response.content.decode()
    hook.refresh_from_db()
    assert (hook.enabled, hook.consecutive_failures, hook.disabled_reason) == (True, 0, "")
    assert services.send_due(now=NOW + timedelta(hours=2)) == (1, 0)
    assert len(receiver.requests) == 6
    old.refresh_from_db()
    assert old.status == "failed"
    assert "waited more than 24 hours" in old.error


def test_send_test_delivers_a_sample_and_shows_the_answer_in_place(
    receiver: Receiver, admin_client: Client
) -> None:
    hook = make_channel(NotificationChannel.Kind.WEBHOOK, f"{receiver.base}/hook")
    url = f"/admin/alerts/notificationchannel/{hook.pk}/send-test/"
    answer = admin_client.post(url).json()
    assert answer["ok"] is True
    assert answer["message"].startswith(f"Delivered to “{hook.name}”")
    assert receiver.requests[0].json()["type"] == "test"
    receiver.answer(410)
    answer = admin_client.post(url).json()
    assert answer == {"ok": False, "message": "Not delivered: The webhook answered HTTP 410."}
    assert list(
        AlertNotification.objects.filter(channel=hook).values_list("purpose", "status")
    ) == [("test", "failed"), ("test", "sent")]
    hook.refresh_from_db()
    assert hook.enabled  # a test never disables a channel
    assert admin_client.get(url).status_code == 405


def test_a_channels_url_is_never_shown_again_nor_kept_in_clear(admin_client: Client) -> None:
    url = "https://prod-11.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?sig=TOPSECRET"
    response = admin_client.post(
        "/admin/alerts/notificationchannel/add/",
        {
            "name": "NOC Teams",
            "kind": "teams",
            "url": url,
            "addresses": "",
            "min_severity": Severity.WARNING,
            "enabled": "on",
            "digest_timezone": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    channel = NotificationChannel.objects.get()
    assert channel.secrets()["url"] == url
    assert "TOPSECRET" not in channel.target_ciphertext
    page = admin_client.get(f"/admin/alerts/notificationchannel/{channel.pk}/change/")
    html = page.content.decode()
    assert "TOPSECRET" not in html
    assert "prod-11.westeurope.logic.azure.com" in html  # the host, to recognise it
    history = admin_client.get(f"/admin/alerts/notificationchannel/{channel.pk}/history/")
    assert "TOPSECRET" not in history.content.decode()
    # Saving again without a URL keeps the stored one.
    saved = admin_client.post(
        f"/admin/alerts/notificationchannel/{channel.pk}/change/",
        {
            "name": "NOC Teams",
            "kind": "teams",
            "url": "",
            "addresses": "",
            "min_severity": Severity.CRITICAL,
            "enabled": "on",
            "digest_timezone": "",
        },
    )
    assert saved.status_code == 302, saved.content.decode()[:2000]
    channel.refresh_from_db()
    assert channel.secrets()["url"] == url
    assert (channel.min_severity, channel.enabled) == (Severity.CRITICAL, True)
    # What the database holds (as a dump would show it): only ciphertext.
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM alert_channels")
        assert "TOPSECRET" not in repr(cursor.fetchall())


def test_a_teams_workflow_on_power_platform_is_accepted_and_a_services_key_never_shown(
    admin_client: Client,
) -> None:
    """Teams now hands out workflow URLs on *.api.powerplatform.com; of other services'
    URLs (where the host part is often the key) the admin sees only the service's name."""
    teams_url = (
        "https://default1234abcd.12.environment.api.powerplatform.com:443/powerautomate/"
        "automations/direct/workflows/abc123/triggers/manual/paths/invoke"
        "?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=SIGSECRET"
    )
    for name, kind, url in [
        ("NOC Teams", "teams", teams_url),
        ("On call", "apprise", "opsgenie://KEYSECRET123/"),
    ]:
        response = admin_client.post(
            "/admin/alerts/notificationchannel/add/",
            {
                "name": name,
                "kind": kind,
                "url": url,
                "addresses": "",
                "min_severity": Severity.WARNING,
                "enabled": "on",
                "digest_timezone": "",
            },
        )
        html = response.content.decode()
        assert response.status_code == 302, re.findall(r"errorlist[^>]*>(.*?)</ul", html, re.S)
    listing = admin_client.get("/admin/alerts/notificationchannel/").content.decode()
    assert "default1234abcd.12.environment.api.powerplatform.com" in listing
    assert "Opsgenie (stored)" in listing
    for secret in ("SIGSECRET", "KEYSECRET123", "abc123"):
        assert secret not in listing
    for channel in NotificationChannel.objects.all():
        page = admin_client.get(f"/admin/alerts/notificationchannel/{channel.pk}/change/")
        assert "KEYSECRET123" not in page.content.decode()
        assert "SIGSECRET" not in page.content.decode()


def test_changing_a_channels_kind_checks_its_stored_url_again(admin_client: Client) -> None:
    teams = make_channel(
        NotificationChannel.Kind.TEAMS,
        "https://prod-11.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?sig=S",
    )
    response = admin_client.post(
        f"/admin/alerts/notificationchannel/{teams.pk}/change/",
        {
            "name": teams.name,
            "kind": "slack",
            "url": "",
            "addresses": "",
            "min_severity": Severity.WARNING,
            "enabled": "on",
            "digest_timezone": "",
        },
    )
    assert response.status_code == 200
    assert "A Slack incoming webhook starts with https://hooks.slack.com/services/." in (
        response.content.decode()
    )
    teams.refresh_from_db()
    assert teams.kind == NotificationChannel.Kind.TEAMS


def test_a_wrong_url_for_the_kind_is_refused_with_a_sentence(admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/alerts/notificationchannel/add/",
        {"name": "Oops", "kind": "slack", "url": "https://example.com/x", "min_severity": 20},
    )
    assert response.status_code == 200
    assert "A Slack incoming webhook starts with https://hooks.slack.com/services/." in (
        response.content.decode()
    )
    assert not NotificationChannel.objects.exists()


def test_a_channel_takes_only_alerts_from_its_minimum_severity_up(receiver: Receiver) -> None:
    critical_only = make_channel(
        NotificationChannel.Kind.WEBHOOK,
        f"{receiver.base}/critical",
        min_severity=Severity.CRITICAL,
    )
    stale_alert_for(critical_only, recipients="noc@msp.example")  # stale is a warning
    services.evaluate(now=NOW)
    assert receiver.requests == []
    assert len(mail.outbox) == 1  # the plain recipients still hear of it


# --- acting from the message ----------------------------------------------------------------


def action_links(receiver: Receiver) -> dict[str, str]:
    links = receiver.requests[-1].json()["alerts"][0]["links"]
    return {key: re.sub(r"^https?://[^/]+", "", value) for key, value in links.items() if value}


def test_a_message_link_acts_only_from_its_confirmation_page(
    receiver: Receiver, admin_client: Client
) -> None:
    hook = make_channel(NotificationChannel.Kind.WEBHOOK, f"{receiver.base}/hook")
    stale_alert_for(hook)
    services.evaluate(now=NOW)
    links = action_links(receiver)
    alert = Alert.objects.get()
    # Not signed in: to the sign-in page first.
    assert Client().get(links["acknowledge"]).status_code == 302
    # A preview or a click only shows what the button would do.
    page = admin_client.get(links["acknowledge"])
    assert page.status_code == 200
    assert "Acknowledge?" in page.content.decode()
    alert.refresh_from_db()
    assert alert.state == Alert.State.OPEN
    done = admin_client.post(links["acknowledge"])
    assert done.status_code == 302
    alert.refresh_from_db()
    assert (alert.state, alert.acknowledged_by) == (Alert.State.ACKNOWLEDGED, "admin")
    # The snooze link snoozes, for four hours.
    admin_client.post(links["snooze_4h"])
    alert.refresh_from_db()
    assert alert.snoozed_until is not None
    assert alert.snoozed_at is not None
    length = alert.snoozed_until - alert.snoozed_at
    assert timedelta(hours=3, minutes=59) < length < timedelta(hours=4, minutes=1)


def test_a_message_link_shows_nothing_to_a_user_who_may_not_see_alerts(
    receiver: Receiver,
) -> None:
    """A forwarded link, opened by a staff user whose role does not cover alerts."""
    from django.contrib.auth.models import Permission

    hook = make_channel(NotificationChannel.Kind.WEBHOOK, f"{receiver.base}/hook")
    stale_alert_for(hook)
    services.evaluate(now=NOW)
    link = action_links(receiver)["acknowledge"]
    outsider = User.objects.create_user("intern", password="pw", is_staff=True)
    client = Client()
    client.force_login(outsider)
    for method in (client.get, client.post):
        page = method(link)
        assert page.status_code == 403
        assert "Your role may not look at alerts." in page.content.decode()
        assert "Contoso" not in page.content.decode()
    assert Alert.objects.get().state == Alert.State.OPEN
    # Allowed to look (not to act): the page shows the alert, the button is refused.
    outsider.user_permissions.add(Permission.objects.get(codename="view_alert"))
    client.force_login(User.objects.get(pk=outsider.pk))
    assert "Contoso" in client.get(link).content.decode()
    assert client.post(link).status_code == 403
    assert Alert.objects.get().state == Alert.State.OPEN


def test_a_message_link_expires_after_seven_days_and_cannot_be_forged(
    receiver: Receiver, admin_client: Client
) -> None:
    hook = make_channel(NotificationChannel.Kind.WEBHOOK, f"{receiver.base}/hook")
    stale_alert_for(hook)
    services.evaluate(now=NOW)
    link = action_links(receiver)["acknowledge"]
    forged = link[:-6] + ("AAAAAA" if not link.endswith("AAAAAA/") else "BBBBBB") + "/"
    bad = admin_client.post(forged)
    assert bad.status_code == 400
    assert "not a valid Vectis alert link" in bad.content.decode()
    with time_machine.travel(timezone.now() + timedelta(days=8)):
        admin_client.force_login(User.objects.get(username="admin"))  # (8 h idle: signed out)
        old = admin_client.get(link)
    assert old.status_code == 400
    assert "This link has expired" in old.content.decode()
    assert Alert.objects.get().state == Alert.State.OPEN


def test_the_demo_receiver_prints_a_delivery_and_checks_its_signature() -> None:
    """`webhook_receiver` (started by `make demo`) on loopback, fed by Send test."""
    from alerts.receiver import run_in_thread, serve

    printed: list[str] = []
    server = serve(host="127.0.0.1", port=0, secret=SECRET, write=printed.append)
    run_in_thread(server)
    try:
        port = server.server_address[1]
        good = make_channel(NotificationChannel.Kind.WEBHOOK, f"http://127.0.0.1:{port}/hook")
        assert services.send_test(good, now=NOW)[0] is True
        assert "Webhook test (delivery" in printed[0]
        assert "signature ok" in printed[0]
        forged = make_channel(
            NotificationChannel.Kind.WEBHOOK, f"http://127.0.0.1:{port}/hook", name="forged"
        )
        forged.set_secrets({"url": f"http://127.0.0.1:{port}/hook", "secret": "wrong"})
        forged.save()
        delivered, answer = services.send_test(forged, now=NOW)
        assert (delivered, answer) == (False, "Not delivered: The webhook answered HTTP 401.")
        assert "signature WRONG" in printed[1]
    finally:
        server.shutdown()
        server.server_close()
