"""Alert evaluation, the user actions on alerts, and the e-mails.

`evaluate(now=...)` reads every condition (alerts/evaluation.py), then claims each state
change with one conditional statement per rule — INSERT … ON CONFLICT DO NOTHING for
openings, UPDATE … WHERE <old state> … RETURNING for resolutions and reminders — and
records an `AlertEvent` only for the rows it changed itself. `notify(now=...)` claims
unnotified events the same way, writes one `AlertNotification` per recipient, and
`send_due(now=...)` delivers them (claim, send, record; failures wait with backoff).
"""

from __future__ import annotations

import logging
import smtplib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import connection as db
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string

from backups.models import BackupConnector, ConnectorKind
from integrations.models import AccountLink

from .evaluation import (
    Condition,
    rule_conditions,
    sync_degraded_conditions,
    sync_stale_conditions,
)
from .models import SENDING_TIMEOUT, Alert, AlertEvent, AlertNotification, AlertRule

logger = logging.getLogger(__name__)


@dataclass
class EvaluationResult:
    opened: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    reminded: list[Alert] = field(default_factory=list)
    notifications: list[AlertNotification] = field(default_factory=list)
    sent: int = 0
    failed: int = 0


# --- claiming state changes ------------------------------------------------------------------


def _returning(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


ALERTS = Alert._meta.db_table
EVENTS = AlertEvent._meta.db_table


def _ids_placeholder(ids: Sequence[Any]) -> str:
    return ", ".join(["%s"] * len(ids))


def _open(conditions: list[Condition], rule: AlertRule | None, *, now: datetime) -> list[int]:
    """Insert an open alert per condition; the partial unique index on unresolved keys
    makes a concurrent evaluation's insert a no-op. Returns the ids this call created."""
    if not conditions:
        return []
    keys = [c.key for c in conditions]
    previous: dict[str, int] = {}
    for key, pk in (
        Alert.objects.filter(key__in=keys, resolved_at__isnull=False)
        .order_by("key", "resolved_at", "id")
        .values_list("key", "pk")
    ):
        previous[key] = pk  # the latest resolved alert of the same condition
    now_db = db.ops.adapt_datetimefield_value(now)
    columns = (
        "key",
        "kind",
        "rule_id",
        "connector_id",
        "connection_id",
        "state",
        "summary",
        "reason",
        "detail",
        "opened_at",
        "last_seen_at",
        "last_notified_at",
        "previous_id",
        "acknowledged_by",
        "acknowledge_note",
        "snoozed_by",
        "snooze_reason",
    )
    rows = [
        (
            c.key,
            c.kind,
            rule.pk if rule else None,
            c.connector_id,
            c.connection_id,
            Alert.State.OPEN,
            c.summary,
            c.reason,
            c.detail,
            now_db,
            now_db,
            now_db,
            previous.get(c.key),
            "",
            "",
            "",
            "",
        )
        for c in conditions
    ]
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    sql = (
        f"INSERT INTO {Alert._meta.db_table} ({', '.join(columns)}) "
        f"VALUES {', '.join([placeholders] * len(rows))} "
        "ON CONFLICT (key) WHERE resolved_at IS NULL DO NOTHING RETURNING id"
    )
    return [row[0] for row in _returning(sql, [v for row in rows for v in row])]


def _resolve(alert_ids: Sequence[int], *, now: datetime) -> list[int]:
    if not alert_ids:
        return []
    sql = (
        f"UPDATE {Alert._meta.db_table} SET state = %s, resolved_at = %s "
        f"WHERE id IN ({_ids_placeholder(alert_ids)}) AND resolved_at IS NULL RETURNING id"
    )
    now_db = db.ops.adapt_datetimefield_value(now)
    return [row[0] for row in _returning(sql, [Alert.State.RESOLVED, now_db, *alert_ids])]


def _remind(alert_ids: Sequence[int], *, now: datetime, cutoff: datetime) -> list[int]:
    """Claim reminders: open (not acknowledged, not snoozed) alerts last notified before
    the cutoff."""
    if not alert_ids:
        return []
    now_db, cutoff_db = (db.ops.adapt_datetimefield_value(t) for t in (now, cutoff))
    sql = (
        f"UPDATE {Alert._meta.db_table} SET last_notified_at = %s "
        f"WHERE id IN ({_ids_placeholder(alert_ids)}) AND state = %s AND resolved_at IS NULL "
        "AND (snoozed_until IS NULL OR snoozed_until <= %s) AND last_notified_at <= %s "
        "RETURNING id"
    )
    params = [now_db, *alert_ids, Alert.State.OPEN, now_db, cutoff_db]
    return [row[0] for row in _returning(sql, params)]


def _record(
    kind: str,
    alert_ids: Iterable[int],
    *,
    now: datetime,
    notified: bool = False,
    by: str = "",
    note: str = "",
) -> None:
    AlertEvent.objects.bulk_create(
        [
            AlertEvent(
                alert_id=pk,
                kind=kind,
                at=now,
                by=by,
                note=note,
                notified_at=now if notified else None,
            )
            for pk in alert_ids
        ]
    )


def _apply(
    conditions: list[Condition],
    unresolved: Q,
    rule: AlertRule | None,
    *,
    now: datetime,
    result: EvaluationResult,
    silent_resolve: bool = False,
) -> None:
    current = {c.key: c for c in conditions}
    open_alerts = dict(
        Alert.objects.filter(unresolved, resolved_at__isnull=True).values_list("key", "pk")
    )
    opened = _open([c for k, c in current.items() if k not in open_alerts], rule, now=now)
    _record(AlertEvent.Kind.OPENED, opened, now=now)
    gone = [pk for key, pk in open_alerts.items() if key not in current]
    resolved = _resolve(gone, now=now)
    # Alerts that ended because their account was excluded end quietly: an exclusion
    # is a decision, not a recovery, and must not send a "resolved" storm.
    excluded = (
        set(
            Alert.objects.filter(
                pk__in=resolved, connector__account_link__state=AccountLink.State.EXCLUDED
            ).values_list("pk", flat=True)
        )
        if resolved and not silent_resolve
        else set()
    )
    _record(
        AlertEvent.Kind.RESOLVED,
        [pk for pk in resolved if pk not in excluded],
        now=now,
        notified=silent_resolve,
    )
    _record(AlertEvent.Kind.RESOLVED, excluded, now=now, notified=True, note=EXCLUDED_NOTE)
    still = [pk for key, pk in open_alerts.items() if key in current]
    reminded: list[int] = []
    if rule is not None and rule.reminder_hours and still:
        cutoff = now - timedelta(hours=rule.reminder_hours)
        reminded = _remind(still, now=now, cutoff=cutoff)
        _record(AlertEvent.Kind.REMINDER, reminded, now=now)
    if still:
        Alert.objects.filter(pk__in=still).update(last_seen_at=now)
    result.opened += Alert.objects.filter(pk__in=opened)
    result.resolved += Alert.objects.filter(pk__in=resolved)
    result.reminded += Alert.objects.filter(pk__in=reminded)


def evaluate(*, now: datetime, send: bool = True) -> EvaluationResult:
    """Evaluate every rule and the sync-stale check, then e-mail what changed."""
    result = EvaluationResult()
    with transaction.atomic():
        for rule in AlertRule.objects.order_by("id"):
            if not rule.enabled:
                # A disabled rule's alerts end quietly.
                _apply([], Q(rule=rule), rule, now=now, result=result, silent_resolve=True)
                continue
            _apply(rule_conditions(rule, now=now), Q(rule=rule), rule, now=now, result=result)
        _apply(
            sync_stale_conditions(now=now),
            Q(kind=Alert.Kind.SYNC_STALE),
            None,
            now=now,
            result=result,
        )
        _apply(
            sync_degraded_conditions(now=now),
            Q(kind=Alert.Kind.SYNC_DEGRADED),
            None,
            now=now,
            result=result,
        )
    result.notifications = notify(now=now)
    if send:
        result.sent, result.failed = send_due(now=now)
    return result


EXCLUDED_NOTE = "The account was excluded from monitoring; resolved without a notice."


def resolve_quietly(alert_ids: Sequence[int], *, now: datetime, by: str, note: str) -> int:
    """End open alerts without a "resolved" message (claimed like every change)."""
    with transaction.atomic():
        resolved = _resolve(list(alert_ids), now=now)
        _record(AlertEvent.Kind.RESOLVED, resolved, now=now, notified=True, by=by, note=note)
    return len(resolved)


def resolve_for_excluded_account(link: AccountLink, *, now: datetime, by: str = "") -> int:
    """An excluded account's open alerts end at once, quietly, with a note."""
    ids = list(
        Alert.objects.filter(connector__account_link=link, resolved_at__isnull=True).values_list(
            "pk", flat=True
        )
    )
    return resolve_quietly(ids, now=now, by=by, note=EXCLUDED_NOTE) if ids else 0


# --- user actions ------------------------------------------------------------------------------


def acknowledge(alert_ids: Sequence[int], *, by: str, note: str, now: datetime) -> int:
    """Open alerts become acknowledged (no reminders; the resolved notice still goes).
    Claimed like every state change: only the rows this call changed get a history entry."""
    if not alert_ids:
        return 0
    with transaction.atomic():
        ids = _ids_placeholder(alert_ids)
        sql = f"UPDATE {ALERTS} SET state = %s, acknowledged_at = %s, acknowledged_by = %s, "
        sql += f"acknowledge_note = %s WHERE id IN ({ids}) AND state = %s RETURNING id"
        params = [
            Alert.State.ACKNOWLEDGED,
            db.ops.adapt_datetimefield_value(now),
            by,
            note,
            *alert_ids,
            Alert.State.OPEN,
        ]
        changed = [row[0] for row in _returning(sql, params)]
        _record(AlertEvent.Kind.ACKNOWLEDGED, changed, now=now, notified=True, by=by, note=note)
    return len(changed)


def snooze(
    alert_ids: Sequence[int], *, until: datetime, reason: str, by: str, now: datetime
) -> int:
    """No reminders until `until`; a snoozed alert that resolves still says so."""
    with transaction.atomic():
        ids = list(
            Alert.objects.filter(pk__in=alert_ids, resolved_at__isnull=True).values_list(
                "pk", flat=True
            )
        )
        Alert.objects.filter(pk__in=ids).update(
            snoozed_until=until, snoozed_at=now, snoozed_by=by, snooze_reason=reason
        )
        _record(
            AlertEvent.Kind.SNOOZED,
            ids,
            now=now,
            notified=True,
            by=by,
            note=f"until {until:%Y-%m-%d %H:%M} UTC: {reason}",
        )
    return len(ids)


def unsnooze(alert_ids: Sequence[int], *, by: str, now: datetime) -> int:
    with transaction.atomic():
        ids = list(
            Alert.objects.filter(pk__in=alert_ids, snoozed_until__isnull=False).values_list(
                "pk", flat=True
            )
        )
        Alert.objects.filter(pk__in=ids).update(snoozed_until=None)
        _record(AlertEvent.Kind.UNSNOOZED, ids, now=now, notified=True, by=by)
    return len(ids)


# --- e-mail --------------------------------------------------------------------------------


def _claim_events(now: datetime) -> list[int]:
    kinds = [str(kind) for kind in AlertEvent.NOTIFIED_KINDS]
    sql = (
        f"UPDATE {AlertEvent._meta.db_table} SET notified_at = %s "
        f"WHERE notified_at IS NULL AND kind IN ({_ids_placeholder(kinds)}) RETURNING id"
    )
    return [row[0] for row in _returning(sql, [db.ops.adapt_datetimefield_value(now), *kinds])]


def _hours_ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return ""
    hours = int((now - moment).total_seconds() // 3600)
    if hours < 1:
        return "less than an hour ago"
    return "1 hour ago" if hours == 1 else f"{hours} hours ago"


KIND_LABELS = dict(Alert.Kind.choices)


def _item(event: AlertEvent, now: datetime) -> dict[str, Any]:
    """One row of a message: one alert (one rule and one connector), with its kind and
    the reason it is open, so every part of the message says why."""
    alert = event.alert
    base = settings.VECTIS_BASE_URL.rstrip("/")
    item: dict[str, Any] = {
        "event": event.kind,
        "kind": alert.kind,
        "kind_label": str(KIND_LABELS.get(alert.kind, alert.kind)),
        "rule": alert.rule.name if alert.rule else "Built-in sync check",
        "alert_url": f"{base}/admin/alerts/alert/{alert.pk}/change/",
        "summary": alert.summary,
        "why": alert.detail,
        "snoozed": alert.is_snoozed(now),
    }
    connector: BackupConnector | None = alert.connector
    if connector is not None:
        status = getattr(connector, "backup_status", None)
        customer = connector.customer
        last_success = status.last_success_at if status else None
        reason = (status.reason_text or status.reason) if status else ""
        item.update(
            customer=customer.name if customer else "Unlinked Keepit account",
            customer_url=f"{base}/admin/customers/customer/{customer.pk}/change/"
            if customer
            else "",
            connector=connector.name,
            connector_kind=str(dict(ConnectorKind.choices).get(connector.kind, connector.kind)),
            last_success=f"{last_success:%Y-%m-%d %H:%M} UTC" if last_success else "never",
            last_success_ago=_hours_ago(last_success, now),
            reason=reason,
            sort=(
                0 if alert.kind == Alert.Kind.BACKUP_FAILED else 1,
                last_success.timestamp() if last_success else 0,
            ),
        )
        if alert.kind == Alert.Kind.BACKUP_STALE and last_success is not None:
            hours = int((now - last_success).total_seconds() // 3600)
            item["why"] = f"No complete backup for {hours} hours (since {item['last_success']})."
        elif not item["why"]:
            item["why"] = reason or alert.summary
    elif alert.connection is not None:
        connection = alert.connection
        last = connection.last_success_at
        item.update(
            customer="Vectis",
            customer_url="",
            connector=connection.name,
            connector_kind="Keepit sync",
            last_success=f"{last:%Y-%m-%d %H:%M} UTC" if last else "never",
            last_success_ago=_hours_ago(last, now),
            reason=connection.last_error,
            why=alert.detail or connection.last_error or alert.summary,
            sort=(2, last.timestamp() if last else 0),
        )
    return item


# In the subject's order: failures first.
KIND_NOUNS = {
    Alert.Kind.BACKUP_FAILED: ("backup failed", "backups failed"),
    Alert.Kind.BACKUP_STALE: ("backup stale", "backups stale"),
    Alert.Kind.SYNC_STALE: ("sync stale", "syncs stale"),
    Alert.Kind.SYNC_DEGRADED: ("sync degraded", "syncs degraded"),
}


def _clean_header(text: str) -> str:
    """Untrusted names must not break or inject mail headers."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def build_subject(items: list[dict[str, Any]]) -> str:
    active = [i for i in items if i["event"] != AlertEvent.Kind.RESOLVED]
    resolved = [i for i in items if i["event"] == AlertEvent.Kind.RESOLVED]
    parts = []
    for kind in KIND_NOUNS:
        count = sum(1 for i in active if i["kind"] == kind)
        if count:
            singular, plural = KIND_NOUNS[kind]
            parts.append(f"{count} {singular if count == 1 else plural}")
    if resolved:
        parts.append(f"{len(resolved)} resolved")
    worst = min(active or resolved, key=lambda i: i.get("sort", (9, 0)))
    subject = (
        f"[Vectis] {', '.join(parts)} — {worst.get('customer', '')}: {worst.get('connector', '')}"
    )
    return _clean_header(subject)[:250]


def notify(*, now: datetime) -> list[AlertNotification]:
    """Claim unnotified events and write one message per recipient grouping them."""
    with transaction.atomic():
        event_ids = _claim_events(now)
        if not event_ids:
            return []
        events = list(
            AlertEvent.objects.filter(pk__in=event_ids).select_related(
                "alert__rule",
                "alert__connector__customer",
                "alert__connector__backup_status",
                "alert__connection",
            )
        )
        everyone = sorted(
            {r for rule in AlertRule.objects.filter(enabled=True) for r in rule.recipient_list}
        )
        per_recipient: dict[str, list[AlertEvent]] = defaultdict(list)
        for event in events:
            rule = event.alert.rule
            if rule is None:
                recipients = everyone  # the sync-stale check concerns everybody
            elif event.kind == AlertEvent.Kind.RESOLVED and not rule.send_resolved:
                continue
            else:
                recipients = rule.recipient_list
            for recipient in recipients:
                per_recipient[recipient].append(event)
        notifications = []
        for recipient, recipient_events in sorted(per_recipient.items()):
            items = sorted(
                (_item(e, now) for e in recipient_events), key=lambda i: i.get("sort", (9, 0))
            )
            context = {
                "new": [i for i in items if i["event"] == AlertEvent.Kind.OPENED],
                "reminders": [i for i in items if i["event"] == AlertEvent.Kind.REMINDER],
                "resolved": [i for i in items if i["event"] == AlertEvent.Kind.RESOLVED],
                "base_url": settings.VECTIS_BASE_URL.rstrip("/"),
                "now": now,
            }
            notification = AlertNotification.objects.create(
                recipient=recipient,
                subject=build_subject(items),
                body_text=render_to_string("emails/alerts-body.txt", context),
                body_html=render_to_string("emails/alerts-body.html", context),
                created_at=now,
                next_attempt_at=now,
            )
            notification.events.set(recipient_events)
            notifications.append(notification)
    return notifications


def _delivery_failure(exc: Exception) -> tuple[bool, str]:
    """(permanent, sentence) for an SMTP failure. A 5xx refusal of this recipient or of
    this message's content is the server's final word about this message: trying again
    cannot help. Everything else — 4xx answers, network errors, and 5xx answers about
    our own configuration (authentication, sender), which would otherwise fail every
    message for good — is retried until the cap."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        answers = list(exc.recipients.values())
        text = "; ".join(
            f"{code} {message.decode(errors='replace') if isinstance(message, bytes) else message}"
            for code, message in answers
        )
        permanent = bool(answers) and all(code >= 500 for code, _message in answers)
        return permanent, f"The mail server refused the recipient: {text}"
    if isinstance(exc, smtplib.SMTPResponseException):
        message = exc.smtp_error
        text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
        permanent = isinstance(exc, smtplib.SMTPDataError) and exc.smtp_code >= 500
        return permanent, f"The mail server answered {exc.smtp_code} {text}"
    return False, f"{type(exc).__name__}: {exc}"


def send_due(*, now: datetime) -> tuple[int, int]:
    """Send every message that is due; returns (sent, failed). Each message is claimed
    first (pending -> sending), so two senders never send the same message. A permanent
    refusal (5xx) fails the message at once; temporary ones are retried with backoff up
    to VECTIS_EMAIL_MAX_ATTEMPTS attempts or VECTIS_EMAIL_MAX_AGE_HOURS hours."""
    due = AlertNotification.objects.filter(
        Q(status=AlertNotification.Status.PENDING, next_attempt_at__lte=now)
        | Q(status=AlertNotification.Status.SENDING, claimed_at__lt=now - SENDING_TIMEOUT)
    ).order_by("next_attempt_at", "id")
    sent = failed = 0
    mail = get_connection()
    max_attempts = settings.VECTIS_EMAIL_MAX_ATTEMPTS
    max_age = timedelta(hours=settings.VECTIS_EMAIL_MAX_AGE_HOURS)
    for notification in due:
        claimed = AlertNotification.objects.filter(
            pk=notification.pk, status=notification.status, claimed_at=notification.claimed_at
        ).update(status=AlertNotification.Status.SENDING, claimed_at=now)
        if claimed != 1:
            continue  # another sender has it
        message = EmailMultiAlternatives(
            subject=notification.subject,
            body=notification.body_text,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[notification.recipient],
            connection=mail,
        )
        message.attach_alternative(notification.body_html, "text/html")
        attempts = notification.attempts + 1
        try:
            message.send()
        except Exception as exc:  # SMTP and socket errors alike: decide, then record
            mail.close()  # the next message starts on a fresh SMTP session
            permanent, sentence = _delivery_failure(exc)
            gave_up = attempts >= max_attempts or now - notification.created_at >= max_age
            if permanent or gave_up:
                if not permanent:
                    sentence = (
                        f"Gave up after {attempts} attempts over "
                        f"{_hours_ago(notification.created_at, now).removesuffix(' ago')}: "
                        f"{sentence}"
                    )
                AlertNotification.objects.filter(pk=notification.pk).update(
                    status=AlertNotification.Status.FAILED,
                    attempts=attempts,
                    error=sentence[:1000],
                    failed_at=now,
                )
                logger.error(
                    "Alert e-mail %s to %s failed for good: %s",
                    notification.pk,
                    notification.recipient,
                    sentence,
                )
            else:
                AlertNotification.objects.filter(pk=notification.pk).update(
                    status=AlertNotification.Status.PENDING,
                    attempts=attempts,
                    error=sentence[:1000],
                    next_attempt_at=now + AlertNotification.backoff(attempts),
                )
                logger.warning(
                    "Alert e-mail %s to %s not sent yet: %s",
                    notification.pk,
                    notification.recipient,
                    sentence,
                )
            failed += 1
            continue
        AlertNotification.objects.filter(pk=notification.pk).update(
            status=AlertNotification.Status.SENT,
            attempts=attempts,
            sent_at=now,
            error="",
        )
        sent += 1
    return sent, failed
