"""The alerts' entry points: evaluate the rules, write the messages, deliver them.

`evaluate(now=...)` reads every condition (alerts/evaluation.py) and brings the alerts in
line with claims (alerts/lifecycle.py); `notify(now=...)` claims the history entries to
tell, composes one message per recipient (alerts/compose.py) and writes each to the
delivery log before anything is sent; `send_due(now=...)` delivers what is due
(alerts/transports.py): claim, send, record — a permanent refusal fails the message at
once, a temporary one waits with backoff up to a cap.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from .compose import compose, hours_ago
from .evaluation import (
    deletion_conditions,
    rule_conditions,
    seat_conditions,
    sync_degraded_conditions,
    sync_stale_conditions,
    token_conditions,
)
from .lifecycle import EvaluationResult, apply, claim_events_to_notify
from .models import SENDING_TIMEOUT, Alert, AlertEvent, AlertNotification, AlertRule
from .transports import DeliveryFailed, EmailTransport, Transport

logger = logging.getLogger(__name__)


def evaluate(*, now: datetime, send: bool = True) -> EvaluationResult:
    """Evaluate every rule and the sync checks, then e-mail what changed."""
    result = EvaluationResult()
    with transaction.atomic():
        for rule in AlertRule.objects.order_by("id"):
            if not rule.enabled:
                # A disabled rule's alerts end quietly.
                apply([], Q(rule=rule), rule, now=now, result=result, silent_resolve=True)
                continue
            apply(rule_conditions(rule, now=now), Q(rule=rule), rule, now=now, result=result)
        apply(
            sync_stale_conditions(now=now),
            Q(kind=Alert.Kind.SYNC_STALE),
            None,
            now=now,
            result=result,
        )
        for kind, conditions in (
            (Alert.Kind.SYNC_DEGRADED, sync_degraded_conditions(now=now)),
            (Alert.Kind.SEAT_EXCEEDED, seat_conditions(now=now)),
            (Alert.Kind.ACCOUNT_DELETION, deletion_conditions(now=now)),
            (Alert.Kind.TOKEN_EXPIRY, token_conditions(now=now)),
        ):
            apply(conditions, Q(kind=kind), None, now=now, result=result)
    result.notifications = notify(now=now)
    if send:
        result.sent, result.failed = send_due(now=now)
    return result


def notify(*, now: datetime) -> list[AlertNotification]:
    """Claim the history entries to tell and write one message per recipient grouping
    them (the delivery log), before anything is sent."""
    with transaction.atomic():
        event_ids = claim_events_to_notify(now)
        if not event_ids:
            return []
        events = list(
            AlertEvent.objects.filter(pk__in=event_ids).select_related(
                "alert__rule",
                "alert__connector__customer",
                "alert__connector__connection",
                "alert__connector__backup_status",
                "alert__connection",
                "alert__account_link__customer",
                "alert__account_link__connection",
            )
        )
        rules = list(AlertRule.objects.filter(enabled=True).prefetch_related("customers"))
        everyone = sorted({r for rule in rules for r in rule.recipient_list})
        per_recipient: dict[str, list[AlertEvent]] = defaultdict(list)
        for event in events:
            rule = event.alert.rule
            link = event.alert.account_link
            if rule is None and link is not None:
                # An account's seats or deletion: whoever watches that customer (and, for
                # a resolution, wants resolved notices).
                resolved = event.kind == AlertEvent.Kind.RESOLVED
                recipients = sorted(
                    {
                        r
                        for candidate in rules
                        if _covers(candidate, link.customer_id)
                        and (candidate.send_resolved or not resolved)
                        for r in candidate.recipient_list
                    }
                )
            elif rule is None:
                recipients = everyone  # the sync and token checks concern everybody
            elif event.kind == AlertEvent.Kind.RESOLVED and not rule.send_resolved:
                continue
            else:
                recipients = rule.recipient_list
            for recipient in recipients:
                per_recipient[recipient].append(event)
        notifications = []
        for recipient, recipient_events in sorted(per_recipient.items()):
            message = compose(recipient_events, now=now)
            notification = AlertNotification.objects.create(
                recipient=recipient,
                subject=message.subject,
                body_text=message.text,
                body_html=message.html,
                created_at=now,
                next_attempt_at=now,
            )
            notification.events.set(recipient_events)
            notifications.append(notification)
    return notifications


def _covers(rule: AlertRule, customer_id: int | None) -> bool:
    """The rule watches this customer (a rule without customers watches all)."""
    scoped = {customer.pk for customer in rule.customers.all()}
    return not scoped or customer_id in scoped


def send_due(*, now: datetime, transport: Transport | None = None) -> tuple[int, int]:
    """Send every message that is due; returns (sent, failed). Each message is claimed
    first (pending -> sending), so two senders never send the same message. A permanent
    refusal fails the message at once; temporary ones are retried with backoff up to
    VECTIS_EMAIL_MAX_ATTEMPTS attempts or VECTIS_EMAIL_MAX_AGE_HOURS hours."""
    due = AlertNotification.objects.filter(
        Q(status=AlertNotification.Status.PENDING, next_attempt_at__lte=now)
        | Q(status=AlertNotification.Status.SENDING, claimed_at__lt=now - SENDING_TIMEOUT)
    ).order_by("next_attempt_at", "id")
    sent = failed = 0
    channel = transport or EmailTransport()
    max_attempts = settings.VECTIS_EMAIL_MAX_ATTEMPTS
    max_age = timedelta(hours=settings.VECTIS_EMAIL_MAX_AGE_HOURS)
    try:
        for notification in due:
            claimed = AlertNotification.objects.filter(
                pk=notification.pk, status=notification.status, claimed_at=notification.claimed_at
            ).update(status=AlertNotification.Status.SENDING, claimed_at=now)
            if claimed != 1:
                continue  # another sender has it
            attempts = notification.attempts + 1
            try:
                channel.send(notification)
            except DeliveryFailed as failure:
                _record_failure(
                    notification,
                    failure,
                    attempts=attempts,
                    now=now,
                    max_attempts=max_attempts,
                    max_age=max_age,
                )
                failed += 1
                continue
            AlertNotification.objects.filter(pk=notification.pk).update(
                status=AlertNotification.Status.SENT, attempts=attempts, sent_at=now, error=""
            )
            sent += 1
    finally:
        channel.close()
    return sent, failed


def _record_failure(
    notification: AlertNotification,
    failure: DeliveryFailed,
    *,
    attempts: int,
    now: datetime,
    max_attempts: int,
    max_age: timedelta,
) -> None:
    sentence = failure.sentence
    gave_up = attempts >= max_attempts or now - notification.created_at >= max_age
    if failure.permanent or gave_up:
        if not failure.permanent:
            span = hours_ago(notification.created_at, now).removesuffix(" ago")
            sentence = f"Gave up after {attempts} attempts over {span}: {sentence}"
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
        return
    AlertNotification.objects.filter(pk=notification.pk).update(
        status=AlertNotification.Status.PENDING,
        attempts=attempts,
        error=sentence[:1000],
        next_attempt_at=now + AlertNotification.backoff(attempts),
    )
    logger.warning(
        "Alert e-mail %s to %s not sent yet: %s", notification.pk, notification.recipient, sentence
    )
