"""Alert rules, the alert lifecycle and the e-mails, on PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core import mail
from django.core.mail import EmailMultiAlternatives
from django.core.management import call_command
from django.db import connection as db
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from pytest_django.fixtures import Settings

from alerts import lifecycle, services
from alerts.models import Alert, AlertEvent, AlertNotification, AlertRule
from backups.models import (
    AuditCategory,
    BackupConnector,
    BackupConnectorStatus,
    BackupStatus,
)
from customers.models import Customer
from integrations.models import Connection
from tests.conftest import query_plan
from tests.factories import (
    NOW,
    AuditEventFactory,
    ConnectionFactory,
    ConnectorFactory,
    CustomerFactory,
    FailedRuleFactory,
    StaleRuleFactory,
)

pytestmark = pytest.mark.django_db


def html_of(message: Any) -> str:
    """The HTML alternative of a sent message."""
    multi = cast(EmailMultiAlternatives, message)
    content, mimetype = multi.alternatives[0]
    assert mimetype == "text/html"
    return str(content)


def evaluate(now: datetime = NOW) -> lifecycle.EvaluationResult:
    return services.evaluate(now=now)


@pytest.fixture
def contoso() -> Customer:
    return CustomerFactory.create(name="Contoso Ltd")


# --- Backup Stale ------------------------------------------------------------------------


def test_a_backup_stored_between_reading_the_stale_ids_and_their_words_opens_nothing(
    contoso: Customer,
) -> None:
    """The stale rule reads ids first and words later; a sync that stores a complete backup
    in between must not get an alert saying "no complete backup for 0 hours"."""
    from alerts.evaluation import rule_key, stale_conditions

    rule = StaleRuleFactory.create()
    late = ConnectorFactory.create(
        customer=contoso, backup_status__last_success_at=NOW - timedelta(days=3)
    )
    other = ConnectorFactory.create(
        customer=contoso, name="Entra ID", backup_status__last_success_at=NOW - timedelta(days=4)
    )
    conditions = stale_conditions(rule, now=NOW)
    assert set(conditions.keys) == {rule_key(rule, late.pk), rule_key(rule, other.pk)}
    late.backup_status.last_success_at = NOW
    late.backup_status.save()
    worded = conditions.all()
    assert [c.connector_id for c in worded] == [other.pk]
    assert worded[0].summary == "Contoso Ltd: Entra ID — no complete backup for 96 hours"


def test_it_opens_one_alert_when_a_backup_goes_stale_at_the_threshold_and_not_before(
    contoso: Customer,
) -> None:
    StaleRuleFactory.create()
    item = ConnectorFactory.create(
        customer=contoso,
        backup_status__last_success_at=NOW - timedelta(hours=48) + timedelta(minutes=1),
    )
    assert evaluate().opened == []
    later = NOW + timedelta(minutes=2)
    result = evaluate(later)
    assert [a.connector_id for a in result.opened] == [item.pk]
    assert (
        result.opened[0].summary == "Contoso Ltd: Microsoft 365 — no complete backup for 48 hours"
    )
    assert len(mail.outbox) == 1


def test_the_threshold_is_configurable_per_rule(contoso: Customer) -> None:
    StaleRuleFactory.create(threshold_hours=12)
    ConnectorFactory.create(
        customer=contoso, backup_status__last_success_at=NOW - timedelta(hours=13)
    )
    assert len(evaluate().opened) == 1


def test_onboarding_connectors_get_a_grace_period(contoso: Customer) -> None:
    StaleRuleFactory.create()
    ConnectorFactory.create(
        customer=contoso,
        backup_status__last_success_at=None,
        backup_status__status=BackupStatus.ONBOARDING,
        first_seen_at=NOW - timedelta(hours=71),
    )
    assert evaluate().opened == []
    result = evaluate(NOW + timedelta(hours=2))
    assert len(result.opened) == 1
    assert "no complete backup since it was added" in result.opened[0].summary


def test_removed_connectors_never_alert(contoso: Customer) -> None:
    StaleRuleFactory.create()
    FailedRuleFactory.create()
    gone = ConnectorFactory.create(
        customer=contoso,
        backup_status__last_success_at=NOW - timedelta(days=9),
        removed_at=NOW,
        backup_status__status=BackupStatus.FAILED,
        backup_status__reason="BADTOKEN",
        backup_status__reason_is_failure=True,
    )
    AuditEventFactory.create(connector=gone, occurred_at=NOW - timedelta(hours=1))
    assert evaluate().opened == []
    assert mail.outbox == []


# --- Backup Failed -----------------------------------------------------------------------


def test_a_failure_event_inside_the_lookback_fires_and_outside_does_not(contoso: Customer) -> None:
    FailedRuleFactory.create()
    inside = ConnectorFactory.create(customer=contoso, name="Inside")
    outside = ConnectorFactory.create(customer=contoso, name="Outside")
    succeeded = ConnectorFactory.create(customer=contoso, name="Succeeded")
    other_category = ConnectorFactory.create(customer=contoso, name="User event")
    AuditEventFactory.create(connector=inside, occurred_at=NOW - timedelta(hours=23))
    AuditEventFactory.create(connector=outside, occurred_at=NOW - timedelta(hours=25))
    AuditEventFactory.create(
        connector=succeeded, occurred_at=NOW - timedelta(hours=1), succeeded=True
    )
    AuditEventFactory.create(
        connector=other_category, occurred_at=NOW - timedelta(hours=1), category=AuditCategory.USER
    )
    connector_failure = ConnectorFactory.create(customer=contoso, name="Connector failure")
    AuditEventFactory.create(
        connector=connector_failure,
        occurred_at=NOW - timedelta(hours=2),
        category=AuditCategory.CONNECTOR,
    )
    opened = {a.connector_id for a in evaluate().opened}
    assert opened == {inside.pk, connector_failure.pk}


def test_a_failed_status_with_a_failure_reason_fires_and_says_which(contoso: Customer) -> None:
    FailedRuleFactory.create()
    lost = "Keepit lost access: the authorization expired or was revoked"
    item = ConnectorFactory.create(
        customer=contoso,
        backup_status__status=BackupStatus.FAILED,
        backup_status__reason="BADTOKEN",
        backup_status__reason_is_failure=True,
        backup_status__reason_text=lost,
    )
    ConnectorFactory.create(
        customer=contoso,
        name="Late only",
        backup_status__status=BackupStatus.FAILED,
        backup_status__reason="CLOUDNOCHECKIN",
        backup_status__reason_is_failure=False,
    )
    result = evaluate()
    assert [a.connector_id for a in result.opened] == [item.pk]
    message = mail.outbox[0]
    assert "Keepit lost access: the authorization expired or was revoked" in message.body


def test_the_failed_status_option_can_be_turned_off(contoso: Customer) -> None:
    FailedRuleFactory.create(include_failed_status=False)
    ConnectorFactory.create(
        customer=contoso,
        backup_status__status=BackupStatus.FAILED,
        backup_status__reason="BADTOKEN",
        backup_status__reason_is_failure=True,
    )
    assert evaluate().opened == []


def test_scope_limits_rules_to_chosen_customers_and_kinds(contoso: Customer) -> None:
    fabrikam = CustomerFactory.create(name="Fabrikam")
    rule = StaleRuleFactory.create(connector_kinds=["m365"])
    rule.customers.set([contoso])
    old = NOW - timedelta(days=5)
    wanted = ConnectorFactory.create(customer=contoso, backup_status__last_success_at=old)
    ConnectorFactory.create(
        customer=contoso, name="Okta", kind="okta", backup_status__last_success_at=old
    )
    ConnectorFactory.create(customer=fabrikam, backup_status__last_success_at=old)
    assert [a.connector_id for a in evaluate().opened] == [wanted.pk]


# --- lifecycle ---------------------------------------------------------------------------


def test_one_alert_per_condition_across_many_evaluations(contoso: Customer) -> None:
    StaleRuleFactory.create()
    ConnectorFactory.create(
        customer=contoso, backup_status__last_success_at=NOW - timedelta(days=3)
    )
    for minutes in range(0, 60, 5):
        evaluate(NOW + timedelta(minutes=minutes))
    assert Alert.objects.count() == 1
    assert len(mail.outbox) == 1


def test_acknowledge_snooze_and_the_resolved_notice_while_snoozed(contoso: Customer) -> None:
    StaleRuleFactory.create(reminder_hours=4)
    item = ConnectorFactory.create(
        customer=contoso, backup_status__last_success_at=NOW - timedelta(days=3)
    )
    alert = evaluate().opened[0]
    lifecycle.snooze(
        [alert.pk], until=NOW + timedelta(days=2), reason="Customer migrating", by="tech", now=NOW
    )
    assert evaluate(NOW + timedelta(hours=5)).reminded == []  # snoozed: no reminder
    BackupConnectorStatus.objects.filter(connector=item).update(
        last_success_at=NOW + timedelta(hours=6)
    )
    result = evaluate(NOW + timedelta(hours=7))
    assert [a.pk for a in result.resolved] == [alert.pk]
    resolved_mail = mail.outbox[-1]
    assert resolved_mail.subject.startswith("[Vectis] 1 resolved")
    assert "was snoozed" in resolved_mail.body
    history = list(Alert.objects.get(pk=alert.pk).events.values_list("kind", flat=True))
    assert history == ["opened", "snoozed", "resolved"]


def test_acknowledged_alerts_get_no_reminders_but_open_ones_do(contoso: Customer) -> None:
    StaleRuleFactory.create(reminder_hours=4)
    first = ConnectorFactory.create(
        customer=contoso, name="First", backup_status__last_success_at=NOW - timedelta(days=3)
    )
    ConnectorFactory.create(
        customer=contoso, name="Second", backup_status__last_success_at=NOW - timedelta(days=3)
    )
    opened = evaluate().opened
    acknowledged = next(a for a in opened if a.connector_id == first.pk)
    assert lifecycle.acknowledge([acknowledged.pk], by="tech", note="On it", now=NOW) == 1
    # A second acknowledgement (another tab, another technician) changes nothing.
    assert lifecycle.acknowledge([acknowledged.pk], by="other", note="Me too", now=NOW) == 0
    assert acknowledged.events.filter(kind="acknowledged").count() == 1
    assert evaluate(NOW + timedelta(hours=3)).reminded == []
    reminded = evaluate(NOW + timedelta(hours=4, minutes=1)).reminded
    assert [a.connector.name for a in reminded] == ["Second"]  # type: ignore[union-attr]
    assert "Still open" in html_of(mail.outbox[-1])
    alert = Alert.objects.get(pk=acknowledged.pk)
    assert (alert.state, alert.acknowledged_by, alert.acknowledge_note) == (
        Alert.State.ACKNOWLEDGED,
        "tech",
        "On it",
    )


def test_a_condition_that_returns_opens_a_new_alert_linked_to_the_previous(
    contoso: Customer,
) -> None:
    StaleRuleFactory.create()
    item = ConnectorFactory.create(
        customer=contoso, backup_status__last_success_at=NOW - timedelta(days=3)
    )
    first = evaluate().opened[0]
    BackupConnectorStatus.objects.filter(connector=item).update(last_success_at=NOW)
    assert len(evaluate(NOW + timedelta(hours=1)).resolved) == 1
    later = NOW + timedelta(days=3)
    second = evaluate(later).opened[0]
    assert second.pk != first.pk
    assert second.previous_id == first.pk
    assert Alert.objects.filter(resolved_at__isnull=True).count() == 1


def test_sync_stale_is_the_monitor_watching_itself(contoso: Customer) -> None:
    StaleRuleFactory.create(recipients="tech@msp.example, boss@msp.example")
    connection = ConnectionFactory.create(
        enabled=True,
        last_success_at=NOW - timedelta(minutes=61),
        last_error="Keepit refused the credentials",
    )
    result = evaluate()
    assert [(a.kind, a.connection_id) for a in result.opened] == [
        (Alert.Kind.SYNC_STALE, connection.pk)
    ]
    assert sorted(m.to[0] for m in mail.outbox) == ["boss@msp.example", "tech@msp.example"]
    assert "1 sync stale" in mail.outbox[0].subject
    assert "Keepit refused the credentials" in mail.outbox[0].body
    Connection.objects.filter(pk=connection.pk).update(last_success_at=NOW + timedelta(minutes=1))
    assert len(evaluate(NOW + timedelta(minutes=2)).resolved) == 1


def test_healthy_fresh_syncs_do_not_alert() -> None:
    StaleRuleFactory.create()
    ConnectionFactory.create(enabled=True, last_success_at=NOW - timedelta(minutes=59))
    assert evaluate().opened == []


def test_disabled_rules_do_not_alert_and_their_alerts_end_quietly(contoso: Customer) -> None:
    rule = StaleRuleFactory.create()
    ConnectorFactory.create(
        customer=contoso, backup_status__last_success_at=NOW - timedelta(days=3)
    )
    evaluate()
    AlertRule.objects.filter(pk=rule.pk).update(enabled=False)
    sent_before = len(mail.outbox)
    assert len(evaluate(NOW + timedelta(minutes=5)).resolved) == 1
    assert len(mail.outbox) == sent_before


# --- e-mails -------------------------------------------------------------------------------


def test_one_message_per_recipient_groups_what_changed(contoso: Customer) -> None:
    StaleRuleFactory.create(recipients="tech@msp.example")
    FailedRuleFactory.create(recipients="tech@msp.example, noc@msp.example")
    ConnectorFactory.create(
        customer=contoso,
        name="Microsoft 365",
        backup_status__last_success_at=NOW - timedelta(days=3),
    )
    ConnectorFactory.create(
        customer=contoso,
        name="Entra ID",
        kind="entra_id",
        backup_status__last_success_at=NOW - timedelta(days=4),
    )
    ConnectorFactory.create(
        customer=contoso,
        name="Okta",
        kind="okta",
        backup_status__status=BackupStatus.FAILED,
        backup_status__reason="BADLOGIN",
        backup_status__reason_is_failure=True,
        backup_status__reason_text="Keepit lost access: the login was rejected",
    )
    evaluate()
    by_recipient = {m.to[0]: m for m in mail.outbox}
    assert sorted(by_recipient) == ["noc@msp.example", "tech@msp.example"]
    tech = by_recipient["tech@msp.example"]
    assert tech.subject == "[Vectis] 1 backup failed, 2 backups stale — Contoso Ltd: Okta"
    assert by_recipient["noc@msp.example"].subject == "[Vectis] 1 backup failed — Contoso Ltd: Okta"
    html = html_of(tech)
    assert cast(EmailMultiAlternatives, tech).alternatives[0][1] == "text/html"
    for text in (
        "Contoso Ltd",
        "Microsoft 365",
        "Entra ID",
        "Microsoft Entra ID",
        "72 hours ago",
        "/admin/customers/customer/",
        "/admin/alerts/alert/",
    ):
        assert text in tech.body
        assert text in html
    assert "2026-11-23T12:00+00:00" in tech.body  # the absolute time of the last success (ISO 8601)


def test_untrusted_names_are_escaped_and_cannot_inject_headers() -> None:
    evil = CustomerFactory.create(name="Evil <script>alert(1)</script>\r\nBcc: victim@x.example")
    StaleRuleFactory.create()
    ConnectorFactory.create(
        customer=evil,
        name="M365 <b>bold</b>",
        backup_status__last_success_at=NOW - timedelta(days=3),
    )
    evaluate()
    message = mail.outbox[0]
    assert "\n" not in message.subject
    assert "\r" not in message.subject
    assert message.bcc == []
    assert "Bcc" not in message.extra_headers
    html = html_of(message)
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html


class BrokenBackend:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def send_messages(self, messages: list[Any]) -> int:
        raise ConnectionRefusedError("SMTP server down")

    def close(self) -> None:
        pass


def test_a_failed_delivery_is_logged_retried_with_backoff_and_sent_once(
    contoso: Customer, settings: Settings
) -> None:
    StaleRuleFactory.create()
    ConnectorFactory.create(
        customer=contoso, backup_status__last_success_at=NOW - timedelta(days=3)
    )
    settings.EMAIL_BACKEND = "tests.alerts.test_alerts.BrokenBackend"
    result = evaluate()
    assert (result.sent, result.failed) == (0, 1)
    notification = AlertNotification.objects.get()
    assert notification.status == AlertNotification.Status.PENDING
    assert "SMTP server down" in notification.error
    assert notification.next_attempt_at == NOW + timedelta(minutes=1)
    assert services.send_due(now=NOW + timedelta(seconds=30)) == (0, 0)  # not due yet
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert services.send_due(now=NOW + timedelta(minutes=1)) == (1, 0)
    assert services.send_due(now=NOW + timedelta(minutes=10)) == (0, 0)
    assert len(mail.outbox) == 1
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == (AlertNotification.Status.SENT, 2)
    assert list(notification.events.values_list("kind", flat=True)) == ["opened"]


@pytest.mark.django_db(transaction=True)
def test_two_evaluations_at_once_send_one_email() -> None:
    customer = CustomerFactory.create(name="Contoso Ltd")
    StaleRuleFactory.create()
    for index in range(20):
        ConnectorFactory.create(
            customer=customer,
            name=f"Connector {index}",
            backup_status__last_success_at=NOW - timedelta(days=3),
        )
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            services.evaluate(now=NOW)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert Alert.objects.count() == 20
    assert AlertEvent.objects.filter(kind="opened").count() == 20
    assert len(mail.outbox) == 1
    assert "20 backups stale" in mail.outbox[0].subject


def test_the_evaluation_query_count_does_not_grow_with_connectors(contoso: Customer) -> None:
    StaleRuleFactory.create()
    FailedRuleFactory.create()
    counts = []
    for size in (3, 40):
        BackupConnector.objects.all().delete()
        for index in range(size):
            item = ConnectorFactory.create(
                customer=contoso,
                name=f"C{size}-{index}",
                backup_status__last_success_at=NOW - timedelta(days=3),
            )
            AuditEventFactory.create(connector=item, occurred_at=NOW - timedelta(hours=1))
        with CaptureQueriesContext(db) as opening:
            services.evaluate(now=NOW, send=False)
        with CaptureQueriesContext(db) as steady:
            services.evaluate(now=NOW + timedelta(minutes=5), send=False)
        counts.append((len(opening.captured_queries), len(steady.captured_queries)))
        Alert.objects.all().delete()
    assert counts[0] == counts[1]


def test_a_steady_evaluation_writes_nothing(contoso: Customer) -> None:
    """Nothing changed since the last pass (the same stale and failed connectors, their
    alerts open with the same words): the pass writes no row at all — at 80,000
    connectors rewriting every open alert each pass was most of its time."""
    StaleRuleFactory.create()
    FailedRuleFactory.create()
    for index in range(5):
        item = ConnectorFactory.create(
            customer=contoso,
            name=f"C{index}",
            backup_status__last_success_at=NOW - timedelta(days=3),
        )
        AuditEventFactory.create(connector=item, occurred_at=NOW - timedelta(hours=1))
    services.evaluate(now=NOW, send=False)
    opened = Alert.objects.filter(resolved_at__isnull=True).count()
    assert opened == 10
    services.notify(now=NOW)
    before = {a.pk: (a.last_seen_at, a.summary) for a in Alert.objects.all()}

    def rows_written() -> dict[str, int]:
        """Rows inserted, updated or deleted so far in this (the test's) transaction."""
        with db.cursor() as cursor:
            cursor.execute(
                "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_xact_user_tables "
                "WHERE relname IN ('alerts', 'alert_events', 'alert_notifications')"
            )
            return dict(cursor.fetchall())

    written_before = rows_written()
    services.evaluate(now=NOW + timedelta(minutes=5), send=False)
    assert rows_written() == written_before
    assert sum(written_before.values()) > 0  # the counter does count this transaction
    assert {a.pk: (a.last_seen_at, a.summary) for a in Alert.objects.all()} == before


# --- operators and the admin ------------------------------------------------------------


def test_evaluate_alerts_command_reports_what_it_did(
    contoso: Customer, capsys: pytest.CaptureFixture[str]
) -> None:
    StaleRuleFactory.create()
    ConnectorFactory.create(
        customer=contoso, backup_status__last_success_at=NOW - timedelta(days=3)
    )
    with time_machine.travel(NOW, tick=False):
        call_command("evaluate_alerts")
    out = capsys.readouterr().out
    assert "Opened: 1" in out
    assert "Contoso Ltd: Microsoft 365 — no complete backup for 72 hours" in out
    assert "E-mails sent: 1" in out


def test_the_new_rule_page_offers_the_two_types(client: Client, admin_user: User) -> None:
    client.force_login(admin_user)
    html = client.get("/admin/alerts/alertrule/add/").content.decode()
    assert "Backup Stale" in html
    assert "Backup Failed" in html
    response = client.post(
        "/admin/alerts/alertrule/add/",
        {
            "name": "Stale",
            "kind": "backup_stale",
            "enabled": "on",
            "threshold_hours": "36",
            "onboarding_grace_hours": "72",
            "lookback_hours": "24",
            "recipients": "a@b.example, c@d",
            "send_resolved": "on",
        },
    )
    assert response.status_code == 200
    assert "Not an e-mail address: c@d" in response.content.decode()


def test_alerts_can_be_acknowledged_and_snoozed_in_the_admin(
    client: Client, admin_user: User, contoso: Customer
) -> None:
    StaleRuleFactory.create()
    ConnectorFactory.create(
        customer=contoso, backup_status__last_success_at=NOW - timedelta(days=3)
    )
    alert = evaluate().opened[0]
    client.force_login(admin_user)
    url = "/admin/alerts/alert/"
    page = client.post(url, {"action": "snooze_action", "_selected_action": [alert.pk]})
    assert "Snooze until" in page.content.decode()
    until = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d %H:%M")
    client.post(
        url,
        {
            "action": "snooze_action",
            "_selected_action": [alert.pk],
            "apply": "1",
            "until": until,
            "reason": "Migration weekend",
        },
    )
    client.post(
        url,
        {
            "action": "acknowledge_action",
            "_selected_action": [alert.pk],
            "apply": "1",
            "note": "Called the customer",
        },
    )
    alert.refresh_from_db()
    assert alert.state == Alert.State.ACKNOWLEDGED
    assert alert.snooze_reason == "Migration weekend"
    assert alert.snoozed_by == "admin"
    detail = client.get(f"/admin/alerts/alert/{alert.pk}/change/").content.decode()
    assert "Called the customer" in detail
    assert "tech@msp.example" in detail  # the e-mail sent for it
    listing = client.get(url + "?state__exact=acknowledged").content.decode()
    assert "Contoso Ltd: Microsoft 365" in listing


def test_every_row_of_a_message_says_which_kind_and_why_in_both_parts(
    contoso: Customer,
) -> None:
    """One row per (rule, connector), each with its kind and reason, in the text part and
    the HTML part alike: Keepit's reason sentence, the failed audit event, the age."""
    StaleRuleFactory.create(name="Stale 48 h")
    FailedRuleFactory.create(name="Failures")
    stale_and_failed = ConnectorFactory.create(
        customer=contoso,
        name="Microsoft 365",
        backup_status__last_success_at=NOW - timedelta(days=3),
    )
    AuditEventFactory.create(connector=stale_and_failed, occurred_at=NOW - timedelta(hours=2))
    ConnectorFactory.create(
        customer=contoso,
        name="Okta",
        kind="okta",
        backup_status__status=BackupStatus.FAILED,
        backup_status__reason="BADTOKEN",
        backup_status__reason_is_failure=True,
        backup_status__reason_text="Keepit lost access: the authorization expired or was revoked",
    )
    evaluate()
    message = mail.outbox[0]
    html = html_of(message)
    text = message.body
    whys = [
        "No complete backup for 72 hours (since 2026-11-23T12:00+00:00).",
        "Failed in the Keepit audit log at 2026-11-26T10:00+00:00: \u201cRestore job failed\u201d.",
        "Keepit says: Keepit lost access: the authorization expired or was revoked.",
    ]
    for why in whys:
        assert f"Why: {why}" in text
        assert why in html
    # Microsoft 365 is stale and failed: two rows, one per rule.
    assert text.count("- Backup stale: Contoso Ltd — Microsoft 365") == 1
    assert text.count("- Backup failed: Contoso Ltd — Microsoft 365") == 1
    assert html.count("<strong>Backup stale</strong>") == 1
    assert html.count("<strong>Backup failed</strong>") == 2
    for rule in ("Rule: Stale 48 h", "Rule: Failures"):
        assert rule in text
        assert rule in html


@pytest.mark.django_db
def test_new_words_for_many_open_alerts_are_one_statement_claimed_on_the_old_step() -> None:
    """A countdown's words change every day for every open alert of its kind (thousands
    at 80,000 connectors): they are written in one statement (up to 5,000 alerts), each
    alert claimed on the step it was read with — one another evaluation moved meanwhile,
    or that was resolved, keeps what it has — and only a nearer step is news."""
    from alerts.evaluation import Condition

    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def open_alerts(count: int, *, offset: int) -> dict[str, tuple[Any, ...]]:
        stored = {}
        for number in range(offset, offset + count):
            alert = Alert.objects.create(
                key=f"token:{number}",
                kind=Alert.Kind.TOKEN_EXPIRY,
                stage="30",
                summary=f"Token {number} expires in 20 days",
                opened_at=now - timedelta(days=10),
                last_seen_at=now - timedelta(days=1),
            )
            stored[alert.key] = (alert.pk, "30", alert.summary, "", Alert.State.OPEN, None)
        return stored

    def nearer(key: str) -> Condition:
        return Condition(
            key=key,
            kind=Alert.Kind.TOKEN_EXPIRY,
            summary=f"{key} in 6 days",
            detail=f"{key}: renew it in Keepit within 6 days.",
            stage="7",
        )

    statements = []
    for count, offset in ((3, 0), (30, 100)):
        stored = open_alerts(count, offset=offset)
        with CaptureQueriesContext(db) as captured:
            told = lifecycle.escalate([nearer(key) for key in stored], stored, now=now)
        statements.append(len(captured.captured_queries))
        assert sorted(told) == sorted(row[0] for row in stored.values())
    assert statements == [1, 1]

    # Read on step "30", but meanwhile one moved on and one was resolved: neither is
    # rewritten nor told.
    stored = open_alerts(3, offset=200)
    moved, resolved, kept = (row[0] for row in stored.values())
    Alert.objects.filter(pk=moved).update(stage="7", summary="moved by another pass")
    Alert.objects.filter(pk=resolved).update(resolved_at=now)
    told = lifecycle.escalate([nearer(key) for key in stored], stored, now=now)
    assert told == [kept]
    assert Alert.objects.get(pk=moved).summary == "moved by another pass"
    assert Alert.objects.get(pk=resolved).summary == "Token 201 expires in 20 days"
    reworded = Alert.objects.get(pk=kept)
    assert (reworded.stage, reworded.summary, reworded.detail, reworded.last_seen_at) == (
        "7",
        "token:202 in 6 days",
        "token:202: renew it in Keepit within 6 days.",
        now,
    )


@pytest.mark.django_db
def test_conditions_of_a_kind_whose_words_do_not_follow_the_data_skip_the_open_words() -> None:
    """A list of conditions sharing a kind whose words stay as opened (a sync gone
    stale): a pass where it still holds reads only the open alerts' keys, not their words
    (at 80,000 connectors reading every open alert's summary and detail each pass was
    measurable); with mixed kinds it must read them."""
    from django.db.models import Q

    from alerts.evaluation import Condition, Conditions

    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    Alert.objects.create(
        key="sync:1",
        kind=Alert.Kind.SYNC_STALE,
        summary="Sync stale",
        opened_at=now,
        last_seen_at=now,
    )
    holding = Condition(key="sync:1", kind=Alert.Kind.SYNC_STALE, summary="Sync stale")
    assert Conditions.listed([holding]).kind == Alert.Kind.SYNC_STALE
    assert Conditions.listed([]).kind == ""
    mixed = Conditions(["sync:1"], lambda keys: [holding], kind=None)
    for conditions, words_read in (([holding], False), (mixed, True)):
        with CaptureQueriesContext(db) as captured:
            lifecycle.apply(
                conditions,
                Q(kind=Alert.Kind.SYNC_STALE),
                None,
                now=now,
                result=lifecycle.EvaluationResult(),
            )
        reads = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("SELECT")]
        assert any('"alerts"."summary"' in sql for sql in reads) is words_read, reads
    assert Alert.objects.get().summary == "Sync stale"


def test_the_open_alerts_of_a_kind_are_read_from_their_index() -> None:
    """Every pass reads the open alerts of each kind it evaluates (sync, seats, deletion,
    tokens...), most of them with few or none open: without index alert_open_kind_idx each
    read scanned every alert kept (about 15 ms each at 80,000 connectors). With sequential
    scans made expensive, the read must be served by that index."""
    from django.db.models import Q

    now = NOW
    kinds = [Alert.Kind.BACKUP_STALE, Alert.Kind.SEAT_EXCEEDED, Alert.Kind.SYNC_STALE]
    Alert.objects.bulk_create(
        Alert(
            key=f"k{n}",
            kind=kinds[n % 3],
            summary=f"Alert {n}",
            opened_at=now,
            last_seen_at=now,
            resolved_at=now if n % 2 else None,
        )
        for n in range(60)
    )
    with CaptureQueriesContext(db) as captured:
        lifecycle.apply(
            [], Q(kind=Alert.Kind.TOKEN_EXPIRY), None, now=now, result=lifecycle.EvaluationResult()
        )
    read = captured.captured_queries[0]["sql"]
    assert read.startswith('SELECT "alerts"."key"'), read
    plan = query_plan(read, table="alerts", expensive="enable_seqscan")
    assert "alert_open_kind_idx" in plan, plan
