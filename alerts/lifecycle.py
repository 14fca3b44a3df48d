"""The alert lifecycle: every state change is a claim.

Opening is an `INSERT … ON CONFLICT DO NOTHING` on the partial unique index of unresolved
keys; resolving, reminding, acknowledging, snoozing and unsnoozing are each one
`UPDATE … WHERE <old state> … RETURNING id` (integrations/sql.py). Only the rows a call
changed itself come back, and only they get an `AlertEvent`, so two evaluations (or two
technicians) at once never record — or notify — a change twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q

from backups.models import AccountLink
from integrations.sql import (
    column,
    id_array,
    in_ids,
    insert_rows,
    update_claimed,
    update_returning,
)

from .compose import in_message
from .evaluation import Condition, Conditions
from .models import Alert, AlertEvent, AlertNotification, AlertRule

EXCLUDED_NOTE = "The account was excluded from monitoring; resolved without a notice."
REMOVED_NOTE = "The vendor no longer lists the account (deleted); resolved without a notice."


@dataclass
class EvaluationResult:
    opened: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    reminded: list[Alert] = field(default_factory=list)
    notifications: list[AlertNotification] = field(default_factory=list)
    sent: int = 0
    failed: int = 0


def _ids(
    ids: Sequence[int], model: type[Alert] | type[AlertEvent] = Alert
) -> tuple[str, list[Any]]:
    """`id IN <ids>` as one array parameter on PostgreSQL, however many there are (a pass
    at 80,000 connectors can remind tens of thousands of alerts at once)."""
    return in_ids(column(model, "id"), ids)


def open_alerts(conditions: list[Condition], rule: AlertRule | None, *, now: datetime) -> list[int]:
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
    rows = [
        {
            "key": c.key,
            "kind": c.kind,
            "rule_id": rule.pk if rule else None,
            "connector_id": c.connector_id,
            "connection_id": c.connection_id,
            "account_link_id": c.account_link_id,
            "stage": c.stage,
            "state": Alert.State.OPEN,
            "summary": c.summary,
            "reason": c.reason,
            "detail": c.detail,
            "opened_at": now,
            "last_seen_at": now,
            "last_notified_at": now,
            "previous_id": previous.get(c.key),
        }
        for c in conditions
    ]
    return insert_rows(Alert, rows, conflict="(key) WHERE resolved_at IS NULL")


def resolve(alert_ids: Sequence[int], *, now: datetime) -> list[int]:
    if not alert_ids:
        return []
    chosen, params = _ids(alert_ids)
    return update_returning(
        Alert,
        {"state": Alert.State.RESOLVED, "resolved_at": now},
        where=f"{chosen} AND {column(Alert, 'resolved_at')} IS NULL",
        params=params,
    )


def remind(alert_ids: Sequence[int], *, now: datetime, cutoff: datetime) -> list[int]:
    """Claim reminders: open (not acknowledged, not snoozed) alerts last notified before
    the cutoff."""
    if not alert_ids:
        return []
    snoozed_until = column(Alert, "snoozed_until")
    chosen, params = _ids(alert_ids)
    return update_returning(
        Alert,
        {"last_notified_at": now},
        where=(
            f"{chosen} AND {column(Alert, 'state')} = %s "
            f"AND {column(Alert, 'resolved_at')} IS NULL "
            f"AND ({snoozed_until} IS NULL OR {snoozed_until} <= %s) "
            f"AND {column(Alert, 'last_notified_at')} <= %s"
        ),
        params=[*params, Alert.State.OPEN, now, cutoff],
    )


def record(
    kind: str,
    alert_ids: Iterable[int],
    *,
    now: datetime,
    notified: bool = False,
    by: str = "",
    note: str = "",
) -> None:
    """History entries for the alerts a claim changed. `notified`: entries that are not
    (or not any more) to be e-mailed."""
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


def apply(
    conditions: Conditions | list[Condition],
    unresolved: Q,
    rule: AlertRule | None,
    *,
    now: datetime,
    result: EvaluationResult,
    silent_resolve: bool = False,
) -> None:
    """Bring the alerts selected by `unresolved` in line with the conditions that hold:
    open the new ones, resolve the ones that ended, remind the ones due a reminder.

    Only what changed is written: an alert that is still open and says the same is not
    touched (at 80,000 connectors a pass would otherwise rewrite tens of thousands of
    rows). An open alert holds as of the latest evaluation by definition; its
    `last_seen_at` is when it opened or its words last changed. Words are built only for
    the alerts to open, and for the open ones whose words follow the data."""
    current = conditions if isinstance(conditions, Conditions) else Conditions.listed(conditions)
    refreshed = current.kind is None or current.kind in REFRESHED_KINDS
    # The open alerts, with their words when those follow the data (one read either way).
    words = ("stage", "summary", "detail", "state", "snoozed_until") if refreshed else ()
    unresolved_now = Alert.objects.filter(unresolved, resolved_at__isnull=True)
    # An incremental pass decides only about the connectors it looked at (read through
    # index alert_open_connector_idx): the others' open alerts still hold, as nothing
    # they depend on changed.
    looked_at = (
        unresolved_now
        if current.evaluated is None
        else unresolved_now.filter(connector_id__in=id_array(current.evaluated))
    )
    open_rows = list(looked_at.order_by().values_list("key", "pk", *words))
    already = {row[0]: row[1] for row in open_rows}
    opened = open_alerts(
        current.words([key for key in current.keys if key not in already]), rule, now=now
    )
    record(AlertEvent.Kind.OPENED, opened, now=now)
    gone = [pk for key, pk in already.items() if key not in current]
    resolved = resolve(gone, now=now)
    # Alerts that ended because their account was excluded end quietly: an exclusion
    # is a decision, not a recovery, and must not send a "resolved" storm.
    excluded = (
        set(
            Alert.objects.filter(
                Q(connector__account_link__state=AccountLink.State.EXCLUDED)
                | Q(account_link__state=AccountLink.State.EXCLUDED),
                pk__in=resolved,
            ).values_list("pk", flat=True)
        )
        if resolved and not silent_resolve
        else set()
    )
    record(
        AlertEvent.Kind.RESOLVED,
        [pk for pk in resolved if pk not in excluded],
        now=now,
        notified=silent_resolve,
    )
    record(AlertEvent.Kind.RESOLVED, excluded, now=now, notified=True, note=EXCLUDED_NOTE)
    # An account alert (seats, deletion) that ends because the account is gone is no
    # good news: it ends quietly too.
    gone_accounts = (
        set(
            Alert.objects.filter(
                pk__in=[pk for pk in resolved if pk not in excluded],
                account_link__removed_at__isnull=False,
            ).values_list("pk", flat=True)
        )
        if resolved and not silent_resolve
        else set()
    )
    AlertEvent.objects.filter(
        alert_id__in=gone_accounts, kind=AlertEvent.Kind.RESOLVED, at=now
    ).update(notified_at=now, note=REMOVED_NOTE)
    escalated = (
        escalate(
            current.words([key for key in already if key in current]),
            {row[0]: row[1:] for row in open_rows},
            now=now,
        )
        if refreshed
        else []
    )
    record(AlertEvent.Kind.REMINDER, escalated, now=now, note="Nearer its deadline")
    reminded: list[int] = []
    if rule is not None and rule.reminder_hours:
        # The alerts still open (the ended ones were just resolved) and last told before
        # the cutoff, whether or not this pass looked at their connectors.
        cutoff = now - timedelta(hours=rule.reminder_hours)
        due = list(unresolved_now.filter(last_notified_at__lte=cutoff).values_list("pk", flat=True))
        reminded = remind(due, now=now, cutoff=cutoff)
        record(AlertEvent.Kind.REMINDER, reminded, now=now)
    result.opened += Alert.objects.filter(pk__in=opened)
    result.resolved += Alert.objects.filter(pk__in=resolved)
    result.reminded += Alert.objects.filter(pk__in=[*reminded, *escalated])


# Countdown steps, farthest first: moving right is news. ("grace": a seat limit's grace
# period with more than a week left; "30": a token with more than a week left.)
STAGES = ("", "30", "grace", "7", "1", "0")
# Alerts whose words follow the data while they are open: countdowns (the days left) and
# a failed backup whose job error arrives a sync later. Only a nearer step is told again.
REFRESHED_KINDS = (
    Alert.Kind.TOKEN_EXPIRY,
    Alert.Kind.SEAT_EXCEEDED,
    Alert.Kind.ACCOUNT_DELETION,
    Alert.Kind.BACKUP_FAILED,
)


def escalate(
    holding: list[Condition],
    stored: dict[str, tuple[Any, ...]],
    *,
    now: datetime,
) -> list[int]:
    """Open alerts whose words changed get them (claimed on the old step); those whose
    countdown step moved nearer (token expiry, seat grace, deletion) are returned, to be
    told once more. A step moving back (more time) updates the words quietly.
    `holding`: the conditions of open alerts; `stored`: each open alert's (id, stage,
    summary, detail, state, snoozed_until) by key, as read with them."""
    changes: list[tuple[int, str, Condition]] = []
    for condition in holding:
        if condition.kind not in REFRESHED_KINDS or condition.key not in stored:
            continue
        pk, old, summary, detail, _state, _snoozed_until = stored[condition.key]
        if (old, summary, detail) != (condition.stage, condition.summary, condition.detail):
            changes.append((pk, old, condition))
    changed = _reword(changes, now=now)
    nearer: list[int] = []
    for pk, old, condition in changes:
        _pk, _old, _summary, _detail, state, snoozed_until = stored[condition.key]
        snoozed = snoozed_until is not None and snoozed_until > now
        # A nearer step is news — unless someone already has it in hand (acknowledged)
        # or asked for quiet (snoozed).
        nearer_step = _rank(condition.stage) > _rank(old)
        if pk in changed and nearer_step and state == Alert.State.OPEN and not snoozed:
            nearer.append(pk)
    return nearer


def _reword(changes: list[tuple[int, str, Condition]], *, now: datetime) -> set[int]:
    """Give open alerts their new words, each claimed on its old step (an alert another
    evaluation moved, or that was resolved, meanwhile is left alone); the ids changed.
    The words follow every day ("6 days of grace left"): at 80,000 connectors that is
    thousands of alerts in one pass: on PostgreSQL one statement per 5,000 alerts
    (`update_claimed`, within the parameter limit), not one per alert."""
    alerts = [
        Alert(
            pk=pk,
            stage=condition.stage,
            summary=condition.summary,
            detail=condition.detail,
            last_seen_at=now,
        )
        for pk, _old, condition in changes
    ]
    return update_claimed(
        Alert,
        alerts,
        ["stage", "summary", "detail", "last_seen_at"],
        claim="stage",
        was=[old for _pk, old, _condition in changes],
        still_null=["resolved_at"],
    )


def _rank(stage: str) -> int:
    return STAGES.index(stage) if stage in STAGES else 0


# --- quiet endings -----------------------------------------------------------------------------


def resolve_quietly(alert_ids: Sequence[int], *, now: datetime, by: str, note: str) -> int:
    """End open alerts without a "resolved" message (claimed like every change)."""
    with transaction.atomic():
        resolved = resolve(list(alert_ids), now=now)
        record(AlertEvent.Kind.RESOLVED, resolved, now=now, notified=True, by=by, note=note)
    return len(resolved)


def resolve_for_excluded_account(link: AccountLink, *, now: datetime, by: str = "") -> int:
    """An excluded account's open alerts end at once, quietly, with a note."""
    ids = list(
        Alert.objects.filter(
            Q(connector__account_link=link) | Q(account_link=link), resolved_at__isnull=True
        ).values_list("pk", flat=True)
    )
    return resolve_quietly(ids, now=now, by=by, note=EXCLUDED_NOTE) if ids else 0


# --- what people do ----------------------------------------------------------------------------


def acknowledge(alert_ids: Sequence[int], *, by: str, note: str, now: datetime) -> int:
    """Open alerts become acknowledged (no reminders; the resolved notice still goes)."""
    if not alert_ids:
        return 0
    chosen, params = _ids(alert_ids)
    with transaction.atomic():
        changed = update_returning(
            Alert,
            {
                "state": Alert.State.ACKNOWLEDGED,
                "acknowledged_at": now,
                "acknowledged_by": by,
                "acknowledge_note": note,
            },
            where=f"{chosen} AND {column(Alert, 'state')} = %s",
            params=[*params, Alert.State.OPEN],
        )
        record(AlertEvent.Kind.ACKNOWLEDGED, changed, now=now, notified=True, by=by, note=note)
    return len(changed)


def snooze(
    alert_ids: Sequence[int], *, until: datetime, reason: str, by: str, now: datetime
) -> int:
    """No reminders until `until`; a snoozed alert that resolves still says so."""
    if not alert_ids:
        return 0
    chosen, params = _ids(alert_ids)
    with transaction.atomic():
        changed = update_returning(
            Alert,
            {"snoozed_until": until, "snoozed_at": now, "snoozed_by": by, "snooze_reason": reason},
            where=f"{chosen} AND {column(Alert, 'resolved_at')} IS NULL",
            params=params,
        )
        record(
            AlertEvent.Kind.SNOOZED,
            changed,
            now=now,
            notified=True,
            by=by,
            note=f"until {in_message(until)}: {reason}",
        )
    return len(changed)


def unsnooze(alert_ids: Sequence[int], *, by: str, now: datetime) -> int:
    if not alert_ids:
        return 0
    chosen, params = _ids(alert_ids)
    with transaction.atomic():
        changed = update_returning(
            Alert,
            {"snoozed_until": None},
            where=f"{chosen} AND {column(Alert, 'snoozed_until')} IS NOT NULL",
            params=params,
        )
        record(AlertEvent.Kind.UNSNOOZED, changed, now=now, notified=True, by=by)
    return len(changed)


def claim_events_to_notify(
    now: datetime, *, held: Q | None = None, only: Q | None = None
) -> list[int]:
    """The history entries to tell (openings, reminders, resolutions) not yet claimed by
    a notifier; each comes back to exactly one caller. `held`: alerts whose entries wait
    (a maintenance window covers them); `only`: just these alerts' entries."""
    kinds = [str(kind) for kind in AlertEvent.NOTIFIED_KINDS]
    pending = AlertEvent.objects.filter(notified_at__isnull=True, kind__in=kinds)
    if held is not None:
        pending = pending.exclude(alert__in=Alert.objects.filter(held))
    if only is not None:
        pending = pending.filter(alert__in=Alert.objects.filter(only))
    ids = list(pending.values_list("pk", flat=True))
    if not ids:
        return []
    chosen, params = _ids(ids, AlertEvent)
    return update_returning(
        AlertEvent,
        {"notified_at": now},
        where=f"{chosen} AND {column(AlertEvent, 'notified_at')} IS NULL",
        params=params,
    )
