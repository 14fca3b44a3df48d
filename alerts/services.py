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
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F, Q
from django.utils.html import escape

from integrations.sql import column, placeholders, update_returning

from . import grouping, maintenance, payloads
from .channels import ChannelTransport
from .compose import clean_header, compose, compose_sections, hours_ago
from .evaluation import (
    account_failing_conditions,
    deletion_conditions,
    rule_conditions,
    seat_conditions,
    sync_degraded_conditions,
    sync_stale_conditions,
    token_conditions,
)
from .lifecycle import EvaluationResult, apply, claim_events_to_notify, record
from .models import (
    SENDING_TIMEOUT,
    Alert,
    AlertEvent,
    AlertNotification,
    AlertRule,
    MaintenanceWindow,
    NotificationChannel,
)
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
            (Alert.Kind.ACCOUNT_FAILING, account_failing_conditions(now=now)),
            (Alert.Kind.SEAT_EXCEEDED, seat_conditions(now=now)),
            (Alert.Kind.ACCOUNT_DELETION, deletion_conditions(now=now)),
            (Alert.Kind.TOKEN_EXPIRY, token_conditions(now=now)),
        ):
            apply(conditions, Q(kind=kind), None, now=now, result=result)
        # One alert per root cause: children wait behind their parent's message.
        grouping.link_children()
        grouping.close_explained(now)
    # Summaries of windows that just ended first: they claim what the windows held.
    result.notifications = summarize_maintenance(now=now) + notify(now=now)
    result.notifications += escalate_due(now=now) + send_digests(now=now)
    if send:
        result.sent, result.failed = send_due(now=now)
    return result


def notify(*, now: datetime) -> list[AlertNotification]:
    """Claim the history entries to tell and write one message per recipient and per
    channel grouping them (the delivery log), before anything is sent."""
    with transaction.atomic():
        in_maintenance = maintenance.held_alerts(now)
        waiting = grouping.waiting_behind_parent()
        held = waiting if in_maintenance is None else waiting | in_maintenance
        event_ids = claim_events_to_notify(now, held=held)
        if not event_ids:
            return []
        events = list(AlertEvent.objects.filter(pk__in=event_ids).select_related(*EVENT_RELATED))
        rules = list(
            AlertRule.objects.filter(enabled=True).prefetch_related("customers", "channels")
        )
        per_recipient: dict[str, list[AlertEvent]] = defaultdict(list)
        per_channel: dict[int, list[AlertEvent]] = defaultdict(list)
        channels: dict[int, NotificationChannel] = {}
        for event in events:
            recipients, targets = _audience(event, rules)
            for recipient in recipients:
                per_recipient[recipient].append(event)
            for channel in targets:
                channels[channel.pk] = channel
                per_channel[channel.pk].append(event)
        notifications = []
        for recipient, recipient_events in sorted(per_recipient.items()):
            notifications.append(_write(recipient_events, now=now, recipient=recipient))
        for channel_id, channel_events in sorted(per_channel.items()):
            notifications.append(_write(channel_events, now=now, channel=channels[channel_id]))
    return notifications


# What composing a message needs of an event, in one query.
EVENT_RELATED = (
    "alert__rule",
    "alert__connector__customer",
    "alert__connector__connection",
    "alert__connector__backup_status",
    "alert__connection",
    "alert__account_link__customer",
    "alert__account_link__connection",
)


def summarize_maintenance(*, now: datetime) -> list[AlertNotification]:
    """For each maintenance window whose occurrence has ended since its last summary:
    claim it (once), claim the messages it held, and write one summary per recipient and
    channel — what is still open, and what opened and resolved meanwhile."""
    written: list[AlertNotification] = []
    for window in MaintenanceWindow.objects.all():
        ended = maintenance.latest_ended(window, now)
        if ended is None:
            continue
        start, end = ended
        if window.summarized_until is not None and window.summarized_until >= end:
            continue
        with transaction.atomic():
            unclaimed = Q(summarized_until__isnull=True) | Q(summarized_until__lt=end)
            if not MaintenanceWindow.objects.filter(unclaimed, pk=window.pk).update(
                summarized_until=end
            ):
                continue  # another evaluation has it
            if window.summarized_until is None and end < window.created_at:
                continue  # an occurrence from before the window existed
            scope = maintenance.alerts_of(window)
            event_ids = claim_events_to_notify(now, only=scope)
            held = list(AlertEvent.objects.filter(pk__in=event_ids).select_related(*EVENT_RELATED))
            came_and_went = [
                e for e in held if e.kind == AlertEvent.Kind.RESOLVED and e.alert.opened_at >= start
            ]
            still_open = [
                AlertEvent(alert=alert, kind="open", at=now)
                for alert in Alert.objects.filter(scope, resolved_at__isnull=True).select_related(
                    *(name.removeprefix("alert__") for name in EVENT_RELATED)
                )
            ]
            if not came_and_went and not still_open:
                continue
            written += _write_summary(window, still_open, came_and_went, now=now)
    return written


def escalate_due(*, now: datetime) -> list[AlertNotification]:
    """Alerts still open and unacknowledged longer than their rule's escalation delay go
    to its escalation channel, once (claimed: `escalated_at`), with an "Escalated" entry
    in their history. Snoozed alerts, and alerts whose messages wait (maintenance, a
    parent), do not escalate."""
    written = []
    rules = AlertRule.objects.filter(
        enabled=True,
        escalation_channel__enabled=True,
        escalation_minutes__isnull=False,
    ).select_related("escalation_channel")
    waiting = grouping.waiting_behind_parent()
    in_maintenance = maintenance.held_alerts(now)
    for rule in rules:
        assert rule.escalation_minutes is not None
        due = (
            Alert.objects.filter(
                rule=rule,
                state=Alert.State.OPEN,
                resolved_at__isnull=True,
                escalated_at__isnull=True,
                opened_at__lte=now - timedelta(minutes=rule.escalation_minutes),
            )
            .filter(Q(snoozed_until__isnull=True) | Q(snoozed_until__lte=now))
            .exclude(waiting)
        )
        if in_maintenance is not None:
            due = due.exclude(in_maintenance)
        ids = list(due.values_list("pk", flat=True))
        if not ids:
            continue
        with transaction.atomic():
            # Claimed: of two evaluations at once, one escalates each alert.
            escalated = update_returning(
                Alert,
                {"escalated_at": now},
                where=f"{column(Alert, 'id')} IN ({placeholders(ids)}) "
                f"AND {column(Alert, 'escalated_at')} IS NULL",
                params=ids,
            )
            if not escalated:
                continue
            record(
                AlertEvent.Kind.ESCALATED,
                escalated,
                now=now,
                notified=True,
                note=f"Open and unacknowledged for {rule.escalation_minutes} minutes",
            )
            events = list(
                AlertEvent.objects.filter(
                    alert_id__in=escalated, kind=AlertEvent.Kind.ESCALATED, at=now
                ).select_related(*EVENT_RELATED)
            )
            channel = rule.escalation_channel
            assert channel is not None
            count = len(events)
            written.append(
                _write(
                    events,
                    now=now,
                    channel=channel,
                    purpose=AlertNotification.Purpose.ESCALATION,
                    subject=clean_header(
                        f"[Vectis] Escalated: {count} alert{'s' if count != 1 else ''} of "
                        f"“{rule.name}” open and unacknowledged for "
                        f"{rule.escalation_minutes} minutes"
                    ),
                )
            )
    return written


def send_digests(*, now: datetime) -> list[AlertNotification]:
    """Each channel with a morning digest, once a day at its local time: what it hears
    of that is still open (oldest first) and what opened or resolved since the previous
    digest. Claimed (`last_digest_at`); nothing is sent when there is nothing to say."""
    written = []
    rules = list(AlertRule.objects.filter(enabled=True).prefetch_related("customers", "channels"))
    for channel in NotificationChannel.objects.filter(
        enabled=True, digest_enabled=True, digest_time__isnull=False
    ):
        assert channel.digest_time is not None
        zone = ZoneInfo(channel.digest_timezone or settings.TIME_ZONE)
        local = now.astimezone(zone)
        due = datetime.combine(local.date(), channel.digest_time, tzinfo=zone).astimezone(UTC)
        if due > now:  # not yet today: yesterday's, at yesterday's local time
            yesterday = local.date() - timedelta(days=1)
            due = datetime.combine(yesterday, channel.digest_time, tzinfo=zone).astimezone(UTC)
        previous = channel.last_digest_at
        if previous is None:
            # A digest just switched on starts counting now; the first one goes out at
            # the next digest time, not at once with whatever happens to be open.
            NotificationChannel.objects.filter(pk=channel.pk, last_digest_at=None).update(
                last_digest_at=now
            )
            continue
        if previous >= due:
            continue
        if not NotificationChannel.objects.filter(pk=channel.pk, last_digest_at__lt=due).update(
            last_digest_at=now
        ):
            continue  # another evaluation sends it
        since = previous

        def hears(event: AlertEvent, channel: NotificationChannel = channel) -> bool:
            return any(c.pk == channel.pk for c in _audience(event, rules)[1])

        still_open = [
            event
            for event in (
                AlertEvent(alert=alert, kind="open", at=now)
                for alert in Alert.objects.filter(resolved_at__isnull=True)
                .select_related(*(name.removeprefix("alert__") for name in EVENT_RELATED))
                .order_by("opened_at", "pk")
            )
            if hears(event)
        ]
        changed = [
            event
            for event in AlertEvent.objects.filter(
                at__gt=since,
                at__lte=now,
                kind__in=[AlertEvent.Kind.OPENED, AlertEvent.Kind.RESOLVED],
            )
            .select_related(*EVENT_RELATED)
            .order_by("at", "pk")
            if hears(event)
        ]
        if not still_open and not changed:
            continue
        message = compose_sections(
            subject=f"[Vectis] Daily digest — {len(still_open)} open, {len(changed)} "
            f"change{'' if len(changed) == 1 else 's'}",
            heading=f"Daily digest for {channel.name}",
            intro=f"Backup alerts on {local:%A %d %B %Y}.",
            sections=[
                ("Still open, oldest first", still_open),
                ("Changed since the last digest", changed),
            ],
            now=now,
            keep_order=True,
        )
        notification = AlertNotification.objects.create(
            recipient=channel.name,
            channel=channel,
            purpose=AlertNotification.Purpose.DIGEST,
            subject=message.subject,
            body_text=message.text,
            body_html=message.html,
            payload=payloads.payload(
                AlertNotification.Purpose.DIGEST,
                subject=message.subject,
                text=message.text,
                now=now,
                alerts=[payloads.alert_json(e.alert, event=e.kind) for e in still_open]
                + [payloads.alert_json(e.alert, event=e.kind) for e in changed],
            ),
            created_at=now,
            next_attempt_at=now,
        )
        written.append(notification)
    return written


def _write_summary(
    window: MaintenanceWindow,
    still_open: list[AlertEvent],
    came_and_went: list[AlertEvent],
    *,
    now: datetime,
) -> list[AlertNotification]:
    rules = list(AlertRule.objects.filter(enabled=True).prefetch_related("customers", "channels"))
    per_recipient: dict[str, list[AlertEvent]] = defaultdict(list)
    per_channel: dict[int, list[AlertEvent]] = defaultdict(list)
    channels: dict[int, NotificationChannel] = {}
    for event in [*still_open, *came_and_went]:
        recipients, targets = _audience(event, rules)
        for recipient in recipients:
            per_recipient[recipient].append(event)
        for channel in targets:
            channels[channel.pk] = channel
            per_channel[channel.pk].append(event)
    subject = (
        f"[Vectis] Maintenance “{window.reason}” ended — {len(still_open)} still open, "
        f"{len(came_and_went)} opened and resolved meanwhile"
    )
    written = []

    def one(events: list[AlertEvent], **target: Any) -> AlertNotification:
        open_now = [e for e in events if e in still_open]
        gone = [e for e in events if e in came_and_went]
        message = compose_sections(
            subject=subject,
            heading=f"Maintenance “{window.reason}” has ended",
            intro="Messages were held while it was on. This is what it leaves behind.",
            sections=[("Still open", open_now), ("Opened and resolved meanwhile", gone)],
            now=now,
        )
        notification = AlertNotification.objects.create(
            purpose=AlertNotification.Purpose.MAINTENANCE,
            subject=message.subject,
            body_text=message.text,
            body_html=message.html,
            payload=payloads.payload(
                AlertNotification.Purpose.MAINTENANCE,
                subject=message.subject,
                text=message.text,
                now=now,
                alerts=[payloads.alert_json(e.alert, event=e.kind) for e in events],
            )
            if target.get("channel") is not None
            else {},
            created_at=now,
            next_attempt_at=now,
            **target,
        )
        notification.events.set([e for e in gone if e.pk is not None])
        return notification

    for recipient, events in sorted(per_recipient.items()):
        written.append(one(events, recipient=recipient))
    for channel_id, events in sorted(per_channel.items()):
        channel = channels[channel_id]
        written.append(one(events, recipient=channel.name, channel=channel))
    return written


def _audience(
    event: AlertEvent, rules: list[AlertRule]
) -> tuple[list[str], list[NotificationChannel]]:
    """Who hears of this history entry: e-mail recipients and channels. A rule's alert
    goes to the rule's; an account's seats or deletion to every rule watching that
    customer; the sync and token checks to every rule. Resolutions only where the rule
    sends resolved notices; a channel only from its minimum severity up."""
    alert = event.alert
    resolved = event.kind == AlertEvent.Kind.RESOLVED
    if alert.rule is not None:
        rule = next((r for r in rules if r.pk == alert.rule_id), alert.rule)
        watching = [rule] if rule.send_resolved or not resolved else []
    elif alert.account_link is not None:
        watching = [
            r
            for r in rules
            if _covers(r, alert.account_link.customer_id) and (r.send_resolved or not resolved)
        ]
    else:
        watching = rules  # the sync and token checks concern everybody
    recipients = sorted({address for rule in watching for address in rule.recipient_list})
    severity = alert.severity
    targets = {
        channel.pk: channel
        for rule in watching
        for channel in rule.channels.all()
        if channel.enabled and channel.min_severity <= severity
    }
    return recipients, sorted(targets.values(), key=lambda c: c.pk)


def _write(
    events: list[AlertEvent],
    *,
    now: datetime,
    recipient: str = "",
    channel: NotificationChannel | None = None,
    purpose: str = AlertNotification.Purpose.ALERTS,
    subject: str = "",
) -> AlertNotification:
    """One message of the delivery log, with its content (and, for a channel, the
    webhook JSON every channel kind is built from)."""
    message = compose(events, now=now)
    title = subject or message.subject
    notification = AlertNotification.objects.create(
        recipient=channel.name if channel is not None else recipient,
        channel=channel,
        purpose=purpose,
        subject=title,
        body_text=message.text,
        body_html=message.html,
        payload=payloads.payload(
            purpose,
            subject=title,
            text=message.text,
            now=now,
            alerts=[payloads.alert_json(e.alert, event=e.kind) for e in events],
        )
        if channel is not None
        else {},
        created_at=now,
        next_attempt_at=now,
    )
    notification.events.set(events)
    return notification


def _covers(rule: AlertRule, customer_id: int | None) -> bool:
    """The rule watches this customer (a rule without customers watches all)."""
    scoped = {customer.pk for customer in rule.customers.all()}
    return not scoped or customer_id in scoped


def send_due(*, now: datetime, transport: Transport | None = None) -> tuple[int, int]:
    """Send every message that is due; returns (sent, failed). Each message is claimed
    first (pending -> sending), so two senders never send the same message. A permanent
    refusal fails the message at once; temporary ones are retried with backoff up to
    VECTIS_EMAIL_MAX_ATTEMPTS attempts or VECTIS_EMAIL_MAX_AGE_HOURS hours. A channel
    that fails `VECTIS_CHANNEL_MAX_FAILURES` deliveries in a row disables itself."""
    due = (
        AlertNotification.objects.filter(
            Q(status=AlertNotification.Status.PENDING, next_attempt_at__lte=now)
            | Q(status=AlertNotification.Status.SENDING, claimed_at__lt=now - SENDING_TIMEOUT)
        )
        .select_related("channel")
        .order_by("next_attempt_at", "id")
    )
    sent = failed = 0
    email = transport or EmailTransport()
    chat = transport or ChannelTransport()
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
            channel = notification.channel
            if channel is not None:
                channel.refresh_from_db(fields=["enabled", "disabled_reason"])
                if not channel.enabled:
                    _record_failure(
                        notification,
                        DeliveryFailed(
                            f"The channel “{channel.name}” is disabled"
                            + (f": {channel.disabled_reason}" if channel.disabled_reason else "."),
                            permanent=True,
                        ),
                        attempts=attempts,
                        now=now,
                        max_attempts=max_attempts,
                        max_age=max_age,
                    )
                    failed += 1
                    continue
            try:
                (chat if channel is not None else email).send(notification)
            except DeliveryFailed as failure:
                _record_failure(
                    notification,
                    failure,
                    attempts=attempts,
                    now=now,
                    max_attempts=max_attempts,
                    max_age=max_age,
                )
                if channel is not None and notification.purpose != AlertNotification.Purpose.TEST:
                    _channel_failed(channel, failure, now=now)
                failed += 1
                continue
            AlertNotification.objects.filter(pk=notification.pk).update(
                status=AlertNotification.Status.SENT, attempts=attempts, sent_at=now, error=""
            )
            if channel is not None:
                NotificationChannel.objects.filter(pk=channel.pk).update(consecutive_failures=0)
            sent += 1
    finally:
        email.close()
        if chat is not email:
            chat.close()
    return sent, failed


def _channel_failed(
    channel: NotificationChannel, failure: DeliveryFailed, *, now: datetime
) -> None:
    """One more failure in a row; at `VECTIS_CHANNEL_MAX_FAILURES` the channel disables
    itself (claimed: once), its waiting messages fail, and the admins hear of it."""
    NotificationChannel.objects.filter(pk=channel.pk).update(
        consecutive_failures=F("consecutive_failures") + 1
    )
    limit = settings.VECTIS_CHANNEL_MAX_FAILURES
    reason = (
        f"Disabled after {limit} failed deliveries in a row; the last: {failure.sentence}. "
        "Fix the channel, then enable it again."
    )
    disabled = NotificationChannel.objects.filter(
        pk=channel.pk, enabled=True, consecutive_failures__gte=limit
    ).update(enabled=False, disabled_at=now, disabled_reason=reason[:1000])
    if not disabled:
        return
    logger.error("Channel %s disabled itself: %s", channel.name, reason)
    AlertNotification.objects.filter(
        channel=channel, status=AlertNotification.Status.PENDING
    ).update(
        status=AlertNotification.Status.FAILED,
        failed_at=now,
        error=f"Not sent: the channel “{channel.name}” disabled itself.",
    )
    admins = sorted(
        set(
            get_user_model()
            .objects.filter(is_active=True, is_superuser=True)
            .exclude(email="")
            .values_list("email", flat=True)
        )
    )
    subject = clean_header(f"[Vectis] The channel “{channel.name}” disabled itself")
    text = (
        f"The notification channel “{channel.name}” ({channel.get_kind_display()}) failed "
        f"{limit} deliveries in a row and disabled itself, so alerts no longer reach it.\n\n"
        f"{reason}\n\n{settings.VECTIS_BASE_URL.rstrip('/')}"
        f"/admin/alerts/notificationchannel/{channel.pk}/change/\n"
    )
    for address in admins:
        AlertNotification.objects.create(
            recipient=address,
            purpose=AlertNotification.Purpose.NOTICE,
            subject=subject,
            body_text=text,
            body_html=f"<p>{escape(text)}</p>".replace("\n", "<br>"),
            created_at=now,
            next_attempt_at=now,
        )


def send_test(channel: NotificationChannel, *, now: datetime) -> tuple[bool, str]:
    """The channel's Send test: a sample message through the very code alerts take,
    written to the delivery log and sent at once; returns (delivered, the answer)."""
    text = (
        "This is a test message from Vectis. If you can read it here, alert messages "
        f"reach “{channel.name}”.\n\nSent {now:%Y-%m-%d %H:%M} UTC."
    )
    subject = f"[Vectis] Test message for “{channel.name}”"
    notification = AlertNotification.objects.create(
        recipient=channel.name,
        channel=channel,
        purpose=AlertNotification.Purpose.TEST,
        subject=subject,
        body_text=text,
        body_html=f"<p>{escape(text)}</p>",
        payload=payloads.payload(
            AlertNotification.Purpose.TEST, subject=subject, text=text, now=now, alerts=[]
        ),
        created_at=now,
        next_attempt_at=now,
        status=AlertNotification.Status.SENDING,
        claimed_at=now,
    )
    transport = ChannelTransport()
    try:
        transport.send(notification)
    except DeliveryFailed as failure:
        AlertNotification.objects.filter(pk=notification.pk).update(
            status=AlertNotification.Status.FAILED,
            attempts=1,
            error=failure.sentence,
            failed_at=now,
        )
        return False, f"Not delivered: {failure.sentence}."
    finally:
        transport.close()
    AlertNotification.objects.filter(pk=notification.pk).update(
        status=AlertNotification.Status.SENT, attempts=1, sent_at=now
    )
    return True, f"Delivered to “{channel.name}” at {now:%H:%M} UTC."


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
