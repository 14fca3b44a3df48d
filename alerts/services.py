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
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Case, F, OuterRef, Q, Subquery, When
from django.utils.html import escape

from backups.models import BackupConnector
from integrations.sql import column, in_ids, update_returning

from . import grouping, maintenance, passes, payloads
from .channels import ChannelTransport
from .compose import (
    Message,
    clean_header,
    compose,
    compose_sections,
    hours_ago,
    in_message,
    one_row_per_alert,
)
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
    NotificationAttachment,
    NotificationChannel,
    RulePass,
)
from .transports import DeliveryFailed, EmailTransport, Transport

logger = logging.getLogger(__name__)


def evaluate(*, now: datetime, send: bool = True, full: bool = False) -> EvaluationResult:
    """Evaluate every rule and the sync checks, then e-mail what changed. `full`: look at
    every connector, whatever changed (alerts/passes.py), e.g. after a database restore
    that loaded rows with its triggers off."""
    result = EvaluationResult()
    with transaction.atomic():
        # The rules' last passes, locked: evaluations take turns, so each change taken
        # below is decided by exactly one pass, after the pass before it.
        last = {p.rule_id: p for p in RulePass.objects.select_for_update()}
        if full:
            last = {}
        changes = passes.take_changes()
        # How many connectors there are: asked only if a rule has many to look at.
        fleet = cache(BackupConnector.objects.count)
        scopes: dict[int, list[int]] = {}
        for rule_id, customer_id in AlertRule.customers.through.objects.values_list(
            "alertrule_id", "customer_id"
        ):
            scopes.setdefault(rule_id, []).append(customer_id)
        done = []
        for rule in AlertRule.objects.order_by("id"):
            fingerprint = passes.fingerprint(rule, scopes.get(rule.pk, []))
            if not rule.enabled:
                # A disabled rule's alerts end quietly.
                apply([], Q(rule=rule), rule, now=now, result=result, silent_resolve=True)
                only = None
            else:
                only = passes.connectors_to_evaluate(
                    rule,
                    last.get(rule.pk),
                    now=now,
                    changes=changes,
                    fingerprint=fingerprint,
                    fleet=fleet,
                )
                holding = rule_conditions(rule, now=now, only=only)
                apply(holding, Q(rule=rule), rule, now=now, result=result)
            done.append(
                passes.done(
                    rule, last.get(rule.pk), now=now, full=only is None, fingerprint=fingerprint
                )
            )
        passes.save(done)
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
        rules = _rules()
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
ALERT_RELATED = tuple(name.removeprefix("alert__") for name in EVENT_RELATED)
# Alerts about a root cause (no rule of their own) that escalate like a rule's alerts.
PARENT_KINDS = (*grouping.CONNECTION_KINDS, Alert.Kind.ACCOUNT_FAILING)


def _rules() -> list[AlertRule]:
    return list(AlertRule.objects.filter(enabled=True).prefetch_related("customers", "channels"))


def _not_snoozed(now: datetime) -> Q:
    return Q(snoozed_until__isnull=True) | Q(snoozed_until__lte=now)


def summarize_maintenance(*, now: datetime) -> list[AlertNotification]:
    """For each maintenance window whose occurrence has ended since its last summary:
    claim it (once), claim the messages it held, and write one summary per recipient and
    channel — what is still open, and every resolution it held (an alert that opened
    and resolved meanwhile among them). Alerts another window still covers, and children
    waiting behind an open parent, keep their messages where they are."""
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
            scope = maintenance.alerts_of(window) & ~grouping.waiting_behind_parent()
            still_held = maintenance.held_alerts(now)
            if still_held is not None:
                scope &= ~still_held
            event_ids = claim_events_to_notify(now, only=scope)
            resolved = list(
                AlertEvent.objects.filter(pk__in=event_ids, kind=AlertEvent.Kind.RESOLVED)
                .select_related(*EVENT_RELATED)
                .order_by("at", "pk")
            )
            still_open = [
                AlertEvent(alert=alert, kind="open", at=now)
                for alert in Alert.objects.filter(
                    scope, resolved_at__isnull=True, state=Alert.State.OPEN
                )
                .filter(_not_snoozed(now))
                .select_related(*ALERT_RELATED)
                .order_by("opened_at", "pk")
            ]
            if not resolved and not still_open:
                continue
            written += _write_summary(window, start, still_open, resolved, now=now)
    return written


def escalate_due(*, now: datetime) -> list[AlertNotification]:
    """Alerts still open, unacknowledged and not snoozed longer than their rule's
    escalation delay — counted from when their opening was told, so an alert whose
    messages waited (maintenance, a parent) is not escalated the moment it is first
    told — go to the rule's escalation channel, once (claimed: `escalated_at`), with an
    "Escalated" entry in their history. A root-cause alert (a connection's sync, a
    failing account) has no rule: it escalates through the rules whose messages it
    reaches, to each of their escalation channels whose delay has passed."""
    rules = list(
        AlertRule.objects.filter(
            enabled=True, escalation_channel__enabled=True, escalation_minutes__isnull=False
        )
        .select_related("escalation_channel")
        .prefetch_related("customers")
    )
    if not rules:
        return []
    delay = {rule.pk: timedelta(minutes=rule.escalation_minutes or 0) for rule in rules}
    told = (
        AlertEvent.objects.filter(
            alert=OuterRef("pk"), kind=AlertEvent.Kind.OPENED, notified_at__isnull=False
        )
        .order_by("notified_at")
        .values("notified_at")[:1]
    )
    candidates = (
        Alert.objects.filter(
            Q(rule__in=rules) | Q(rule__isnull=True, kind__in=PARENT_KINDS),
            state=Alert.State.OPEN,
            resolved_at__isnull=True,
            escalated_at__isnull=True,
        )
        .filter(_not_snoozed(now))
        .exclude(grouping.waiting_behind_parent())
        .annotate(told_at=Subquery(told))
        .filter(told_at__lte=now - min(delay.values()))
        .select_related("account_link")
    )
    in_maintenance = maintenance.held_alerts(now)
    if in_maintenance is not None:
        candidates = candidates.exclude(in_maintenance)
    by_id = {rule.pk: rule for rule in rules}
    due: dict[int, list[AlertRule]] = {}
    for alert in candidates:
        if alert.rule_id is not None:
            hearing = [by_id[alert.rule_id]]
        else:
            customer_id = alert.account_link.customer_id if alert.account_link else None
            hearing = [r for r in rules if alert.account_link is None or _covers(r, customer_id)]
        passed = [r for r in hearing if alert.told_at <= now - delay[r.pk]]
        if passed:
            due[alert.pk] = passed
    if not due:
        return []
    written = []
    with transaction.atomic():
        # Claimed with the same conditions: of two evaluations at once one escalates each
        # alert, and one acknowledged or snoozed meanwhile is left alone.
        chosen, params = in_ids(column(Alert, "id"), list(due))
        escalated = set(
            update_returning(
                Alert,
                {"escalated_at": now},
                where=f"{chosen} "
                f"AND {column(Alert, 'escalated_at')} IS NULL "
                f"AND {column(Alert, 'state')} = %s "
                f"AND {column(Alert, 'resolved_at')} IS NULL "
                f"AND ({column(Alert, 'snoozed_until')} IS NULL "
                f"OR {column(Alert, 'snoozed_until')} <= %s)",
                params=[*params, Alert.State.OPEN, now],
            )
        )
        if not escalated:
            return []
        by_minutes: dict[int, list[int]] = defaultdict(list)
        for pk in sorted(escalated):
            by_minutes[min(r.escalation_minutes or 0 for r in due[pk])].append(pk)
        for minutes, pks in sorted(by_minutes.items()):
            record(
                AlertEvent.Kind.ESCALATED,
                pks,
                now=now,
                notified=True,
                note=f"Open and unacknowledged for {minutes} minutes",
            )
        events = {
            event.alert_id: event
            for event in AlertEvent.objects.filter(
                alert_id__in=escalated, kind=AlertEvent.Kind.ESCALATED, at=now
            ).select_related(*EVENT_RELATED)
        }
        per_channel: dict[int, list[tuple[AlertEvent, AlertRule]]] = defaultdict(list)
        channels: dict[int, NotificationChannel] = {}
        for pk in sorted(escalated):
            for rule in due[pk]:
                channel = rule.escalation_channel
                assert channel is not None
                channels[channel.pk] = channel
                if all(event.alert_id != pk for event, _ in per_channel[channel.pk]):
                    per_channel[channel.pk].append((events[pk], rule))
        for channel_id, pairs in sorted(per_channel.items()):
            written.append(_write_escalation(channels[channel_id], pairs, now=now))
    return written


def _write_escalation(
    channel: NotificationChannel, pairs: list[tuple[AlertEvent, AlertRule]], *, now: datetime
) -> AlertNotification:
    events = [event for event, _ in pairs]
    count = len(events)
    names = {event.alert.rule.name if event.alert.rule else "" for event in events}
    minutes = {rule.escalation_minutes for _, rule in pairs}
    subject = f"[Vectis] Escalated: {count} alert{'s' if count != 1 else ''}"
    if len(names) == 1 and "" not in names:
        subject += f" of “{names.pop()}”"
    subject += " open and unacknowledged"
    if len(minutes) == 1:
        subject += f" for {minutes.pop()} minutes"
    message = compose_sections(
        subject=clean_header(subject),
        heading="Escalated: nobody has acknowledged these alerts",
        intro=f"They were told when they opened and are still open and unacknowledged; "
        f"sent to “{channel.name}” as the escalation channel of their alert rules.",
        sections=[("Open and unacknowledged", events)],
        now=now,
    )
    return _write(
        events,
        now=now,
        channel=channel,
        purpose=AlertNotification.Purpose.ESCALATION,
        message=message,
    )


def send_digests(*, now: datetime) -> list[AlertNotification]:
    """Each channel with a daily digest, once a day at its local time: what it hears of
    that is still open (oldest first) and what opened or resolved since the previous
    digest. Alerts whose messages are held (maintenance, a parent) are left to their
    summary or parent. Claimed (`last_digest_at`) in the transaction that writes the
    digest; nothing is sent when there is nothing to say."""
    written = []
    rules = _rules()
    held = grouping.waiting_behind_parent()
    in_maintenance = maintenance.held_alerts(now)
    if in_maintenance is not None:
        held |= in_maintenance
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
        with transaction.atomic():
            if not NotificationChannel.objects.filter(pk=channel.pk, last_digest_at__lt=due).update(
                last_digest_at=now
            ):
                continue  # another evaluation sends it
            notification = _write_digest(channel, rules, held, since=previous, local=local, now=now)
        if notification is not None:
            written.append(notification)
    return written


def _write_digest(
    channel: NotificationChannel,
    rules: list[AlertRule],
    held: Q,
    *,
    since: datetime,
    local: datetime,
    now: datetime,
) -> AlertNotification | None:
    def hears(event: AlertEvent) -> bool:
        _, targets = _audience(event, rules, stream=False, as_opening=True)
        return any(c.pk == channel.pk for c in targets)

    still_open = [
        event
        for event in (
            AlertEvent(alert=alert, kind="open", at=now)
            for alert in Alert.objects.filter(resolved_at__isnull=True)
            .exclude(held)
            .select_related(*ALERT_RELATED)
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
        .exclude(alert__in=Alert.objects.filter(held))
        .select_related(*EVENT_RELATED)
        .order_by("at", "pk")
        if hears(event)
    ]
    if not still_open and not changed:
        return None
    changes = f"{len(changed)} change{'' if len(changed) == 1 else 's'}"
    message = compose_sections(
        subject=f"[Vectis] Daily digest — {len(still_open)} open, {changes}",
        heading=f"Daily digest for {channel.name}",
        intro=f"Backup alerts on {local:%A %d %B %Y}.",
        sections=[
            ("Still open, oldest first", still_open),
            ("Changed since the last digest", changed),
        ],
        now=now,
        keep_order=True,
    )
    return _write(
        [*still_open, *changed],
        now=now,
        channel=channel,
        purpose=AlertNotification.Purpose.DIGEST,
        message=message,
    )


def _write_summary(
    window: MaintenanceWindow,
    start: datetime,
    still_open: list[AlertEvent],
    resolved: list[AlertEvent],
    *,
    now: datetime,
) -> list[AlertNotification]:
    """One summary per recipient and channel. A resolution of an alert that opened
    during the window goes to everyone its opening would have reached (they never heard
    of it), whatever the rule says of resolved notices."""
    rules = _rules()
    per_recipient: dict[str, list[AlertEvent]] = defaultdict(list)
    per_channel: dict[int, list[AlertEvent]] = defaultdict(list)
    channels: dict[int, NotificationChannel] = {}
    for event in [*still_open, *resolved]:
        unheard = event.kind == AlertEvent.Kind.RESOLVED and event.alert.opened_at >= start
        recipients, targets = _audience(event, rules, as_opening=unheard)
        for recipient in recipients:
            per_recipient[recipient].append(event)
        for channel in targets:
            channels[channel.pk] = channel
            per_channel[channel.pk].append(event)
    written = []

    def one(events: list[AlertEvent], **target: Any) -> AlertNotification:
        open_now = [e for e in events if e.kind != AlertEvent.Kind.RESOLVED]
        gone = [e for e in events if e.kind == AlertEvent.Kind.RESOLVED]
        message = compose_sections(
            subject=f"[Vectis] Maintenance “{window.reason}” ended — {len(open_now)} still "
            f"open, {len(gone)} resolved meanwhile",
            heading=f"Maintenance “{window.reason}” has ended",
            intro="Messages were held while it was on. This is what it leaves behind.",
            sections=[("Still open", open_now), ("Resolved meanwhile", gone)],
            now=now,
        )
        return _write(
            events,
            now=now,
            purpose=AlertNotification.Purpose.MAINTENANCE,
            message=message,
            **target,
        )

    for recipient, events in sorted(per_recipient.items()):
        written.append(one(events, recipient=recipient))
    for channel_id, events in sorted(per_channel.items()):
        written.append(one(events, channel=channels[channel_id]))
    return written


def _audience(
    event: AlertEvent,
    rules: list[AlertRule],
    *,
    stream: bool = True,
    as_opening: bool = False,
) -> tuple[list[str], list[NotificationChannel]]:
    """Who hears of this history entry: e-mail recipients and channels. A rule's alert
    goes to the rule's; an account's seats or deletion to every rule watching that
    customer; the sync and token checks to every rule. Resolutions only where the rule
    sends resolved notices (unless `as_opening`: whoever its opening would reach); a
    channel only from its minimum severity up, and — for the stream of messages, not
    the digest — not a digest-only channel."""
    alert = event.alert
    resolved = event.kind == AlertEvent.Kind.RESOLVED and not as_opening
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
        if channel.enabled
        and channel.min_severity <= severity
        and not (stream and channel.digest_only)
    }
    return recipients, sorted(targets.values(), key=lambda c: c.pk)


def _write(
    events: list[AlertEvent],
    *,
    now: datetime,
    recipient: str = "",
    channel: NotificationChannel | None = None,
    purpose: str = AlertNotification.Purpose.ALERTS,
    message: Message | None = None,
) -> AlertNotification:
    """One message of the delivery log, with its content (and, for a channel, the
    webhook JSON every channel kind is built from). `events` that are saved are linked
    to it (an alert that is only still open is an unsaved entry)."""
    message = message or compose(events, now=now)
    notification = AlertNotification.objects.create(
        recipient=channel.name if channel is not None else recipient,
        channel=channel,
        purpose=purpose,
        subject=message.subject,
        body_text=message.text,
        body_html=message.html,
        payload=payloads.payload(
            purpose,
            subject=message.subject,
            text=message.text,
            now=now,
            alerts=[payloads.alert_json(e.alert, event=e.kind) for e in one_row_per_alert(events)],
        )
        if channel is not None
        else {},
        created_at=now,
        next_attempt_at=now,
    )
    notification.events.set([e for e in events if e.pk is not None])
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
    whose deliveries fail for good `VECTIS_CHANNEL_MAX_FAILURES` times in a row disables
    itself; messages to a disabled channel wait (see `enable_channel`). Send tests are
    sent by `send_test` alone."""
    due = (
        AlertNotification.objects.filter(
            Q(status=AlertNotification.Status.PENDING, next_attempt_at__lte=now)
            | Q(status=AlertNotification.Status.SENDING, claimed_at__lt=now - SENDING_TIMEOUT)
        )
        .filter(Q(channel__isnull=True) | Q(channel__enabled=True))
        .exclude(purpose=AlertNotification.Purpose.TEST)
        .select_related("channel")
        # Alerts first: a month's reports (thousands on the 1st) never hold them up.
        .order_by(
            Case(When(purpose=AlertNotification.Purpose.REPORT, then=1), default=0),
            "next_attempt_at",
            "id",
        )
    )
    # A pass stops well before its claims would look abandoned to the next one (each
    # claim is stamped with the pass's `now`); the rest waits for the next minute.
    deadline = time.monotonic() + SENDING_TIMEOUT.total_seconds() / 2
    sent = failed = 0
    email = transport or EmailTransport()
    chat = transport or ChannelTransport()
    max_attempts = settings.VECTIS_EMAIL_MAX_ATTEMPTS
    max_age = timedelta(hours=settings.VECTIS_EMAIL_MAX_AGE_HOURS)
    disabled: set[int] = set()  # channels that disabled themselves during this pass
    try:
        for notification in due:
            if time.monotonic() > deadline:
                break
            channel = notification.channel
            if channel is not None and channel.pk in disabled:
                continue  # its messages wait for it to be enabled again
            claimed = AlertNotification.objects.filter(
                pk=notification.pk, status=notification.status, claimed_at=notification.claimed_at
            ).update(status=AlertNotification.Status.SENDING, claimed_at=now)
            if claimed != 1:
                continue  # another sender has it
            attempts = notification.attempts + 1
            try:
                (chat if channel is not None else email).send(notification)
            except DeliveryFailed as failure:
                final = _record_failure(
                    notification,
                    failure,
                    attempts=attempts,
                    now=now,
                    max_attempts=max_attempts,
                    max_age=max_age,
                )
                if channel is not None and final and _channel_failed(channel, failure, now=now):
                    disabled.add(channel.pk)
                failed += 1
                continue
            AlertNotification.objects.filter(pk=notification.pk).update(
                status=AlertNotification.Status.SENT, attempts=attempts, sent_at=now, error=""
            )
            if notification.purpose == AlertNotification.Purpose.REPORT:
                # Sent: the file's name and size stay in the log, its bytes are not kept.
                NotificationAttachment.objects.filter(notification_id=notification.pk).update(
                    content=b""
                )
            if channel is not None and channel.consecutive_failures:
                NotificationChannel.objects.filter(pk=channel.pk).update(consecutive_failures=0)
                channel.consecutive_failures = 0
            sent += 1
    finally:
        email.close()
        if chat is not email:
            chat.close()
    return sent, failed


def _channel_failed(
    channel: NotificationChannel, failure: DeliveryFailed, *, now: datetime
) -> bool:
    """One more delivery failed for good; at `VECTIS_CHANNEL_MAX_FAILURES` in a row the
    channel disables itself (claimed: once) and the admins hear of it. Returns whether
    it did. Its waiting messages stay in the log and wait for it."""
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
        return False
    logger.error("Channel %s disabled itself: %s", channel.name, reason)
    admins = sorted(
        set(
            get_user_model()
            .objects.filter(is_active=True, is_superuser=True)
            .exclude(email="")
            .values_list("email", flat=True)
        )
    )
    hours = settings.VECTIS_EMAIL_MAX_AGE_HOURS
    subject = clean_header(f"[Vectis] The channel “{channel.name}” disabled itself")
    text = (
        f"The notification channel “{channel.name}” ({channel.get_kind_display()}) failed "
        f"{limit} deliveries in a row and disabled itself, so alerts no longer reach it.\n\n"
        f"{reason}\n\nMessages for it wait: when you enable it again, those written in the "
        f"last {hours} hours are sent.\n\n{settings.VECTIS_BASE_URL.rstrip('/')}"
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
    return True


def enable_channel(channel: NotificationChannel, *, now: datetime) -> int:
    """A disabled channel enabled again: its failure count starts over, and the messages
    that waited for it are sent — those older than `VECTIS_EMAIL_MAX_AGE_HOURS` fail
    instead (old news; the alert page has the current state). Returns how many fail."""
    NotificationChannel.objects.filter(pk=channel.pk).update(
        consecutive_failures=0, disabled_at=None, disabled_reason=""
    )
    hours = settings.VECTIS_EMAIL_MAX_AGE_HOURS
    return AlertNotification.objects.filter(
        channel=channel,
        status=AlertNotification.Status.PENDING,
        created_at__lt=now - timedelta(hours=hours),
    ).update(
        status=AlertNotification.Status.FAILED,
        failed_at=now,
        error=f"Not sent: it waited more than {hours} hours for the channel to be enabled again.",
    )


def send_test(channel: NotificationChannel, *, now: datetime) -> tuple[bool, str]:
    """The channel's Send test: a sample message through the very code alerts take,
    written to the delivery log and sent at once; returns (delivered, the answer)."""
    text = (
        "This is a test message from Vectis. If you can read it here, alert messages "
        f"reach “{channel.name}”.\n\nSent {in_message(now)}."
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
    return True, f"Delivered to “{channel.name}” at {in_message(now)}."


def _record_failure(
    notification: AlertNotification,
    failure: DeliveryFailed,
    *,
    attempts: int,
    now: datetime,
    max_attempts: int,
    max_age: timedelta,
) -> bool:
    """Record a failed attempt; returns whether the message failed for good."""
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
            "Alert message %s to %s failed for good: %s",
            notification.pk,
            notification.recipient,
            sentence,
        )
        return True
    AlertNotification.objects.filter(pk=notification.pk).update(
        status=AlertNotification.Status.PENDING,
        attempts=attempts,
        error=sentence[:1000],
        next_attempt_at=now + AlertNotification.backoff(attempts),
    )
    logger.warning(
        "Alert message %s to %s not sent yet: %s",
        notification.pk,
        notification.recipient,
        sentence,
    )
    return False
