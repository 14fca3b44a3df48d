"""What alert messages say: one row per alert (its kind, rule, subject and why), grouped
per recipient into new / still open / resolved, with a subject that names the worst.

Content only: no database writes, no sending (alerts/services.py writes the delivery log,
alerts/transports.py delivers). Untrusted names from vendors are escaped by the
templates and cleaned out of headers here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone

from backups.models import BackupConnector, ConnectorKind
from integrations.registry import provider_label

from .actions import action_url
from .models import Alert, AlertEvent

KIND_LABELS = dict(Alert.Kind.choices)
CONNECTOR_KINDS = dict(ConnectorKind.choices)
# In the subject's order: failures first.
KIND_NOUNS = {
    Alert.Kind.ACCOUNT_FAILING: (
        "account with every connector failing",
        "accounts with every connector failing",
    ),
    Alert.Kind.BACKUP_FAILED: ("backup failed", "backups failed"),
    Alert.Kind.BACKUP_STALE: ("backup stale", "backups stale"),
    Alert.Kind.SUCCESS_RATE: ("low success rate", "low success rates"),
    Alert.Kind.SEAT_EXCEEDED: ("seat limit exceeded", "seat limits exceeded"),
    Alert.Kind.ACCOUNT_DELETION: (
        "account scheduled for deletion",
        "accounts scheduled for deletion",
    ),
    Alert.Kind.TOKEN_EXPIRY: ("API token expiring", "API tokens expiring"),
    Alert.Kind.SYNC_STALE: ("sync stale", "syncs stale"),
    Alert.Kind.SYNC_DEGRADED: ("sync degraded", "syncs degraded"),
}
# Worst first within a message.
KIND_ORDER: dict[str, int] = {str(kind): rank for rank, kind in enumerate(KIND_NOUNS)}


@dataclass(frozen=True)
class Message:
    subject: str
    text: str
    html: str


def hours_ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return ""
    hours = int((now - moment).total_seconds() // 3600)
    if hours < 1:
        return "less than an hour ago"
    return "1 hour ago" if hours == 1 else f"{hours} hours ago"


def in_message(moment: datetime | None, *, empty: str = "never") -> str:
    """A moment in an e-mail, a chat message or a stored sentence: ISO 8601 with its
    offset, to the minute, in the MSP's time zone ("2026-12-06T09:12+01:00"); pages show
    the viewer's own zone instead (vectis/timefmt.py)."""
    if moment is None:
        return empty
    return timezone.localtime(moment, timezone.get_default_timezone()).isoformat(timespec="minutes")


def message_item(event: AlertEvent, now: datetime) -> dict[str, Any]:
    """One row of a message: one alert (one rule and one connector), with its kind and
    the reason it is open, so every part of the message says why."""
    alert = event.alert
    base = settings.VECTIS_BASE_URL.rstrip("/")
    item: dict[str, Any] = {
        "event": event.kind,
        "kind": alert.kind,
        "kind_label": str(KIND_LABELS.get(alert.kind, alert.kind)),
        "rule": alert.rule.name if alert.rule else "Built-in check",
        "alert_url": f"{base}/admin/alerts/alert/{alert.pk}/change/",
        "summary": alert.summary,
        "why": alert.detail,
        "snoozed": alert.is_snoozed(now),
        "help_url": "",
        "help_label": "",
        # Act from the message (signed, single-purpose links to a confirmation page).
        "acknowledge_url": ""
        if alert.resolved_at or alert.state != Alert.State.OPEN
        else action_url(alert, "acknowledge"),
        "snooze_url": "" if alert.resolved_at else action_url(alert, "snooze"),
    }
    connector: BackupConnector | None = alert.connector
    if connector is not None:
        status = getattr(connector, "backup_status", None)
        customer = connector.customer
        vendor = provider_label(connector.connection.provider)
        last_success = status.last_success_at if status else None
        reason = (status.reason_text or status.reason) if status else ""
        item.update(
            vendor=vendor,
            customer=customer.name if customer else f"Unlinked {vendor} account",
            customer_url=f"{base}/admin/customers/customer/{customer.pk}/change/"
            if customer
            else "",
            connector=connector.name,
            connector_kind=str(CONNECTOR_KINDS.get(connector.kind, connector.kind)),
            last_success=in_message(last_success),
            last_success_ago=hours_ago(last_success, now),
            reason=(status.fix_text or reason) if status else "",
            help_url=status.help_url if status else "",
            help_label=status.help_label or "How to fix" if status else "",
            sort=(
                KIND_ORDER.get(alert.kind, 9),
                last_success.timestamp() if last_success else 0,
            ),
        )
        if alert.kind == Alert.Kind.BACKUP_STALE and last_success is not None:
            hours = int((now - last_success).total_seconds() // 3600)
            item["why"] = f"No complete backup for {hours} hours (since {item['last_success']})."
        elif not item["why"]:
            item["why"] = reason or alert.summary
    elif alert.account_link is not None:
        link = alert.account_link
        vendor = provider_label(link.connection.provider)
        customer = link.customer
        item.update(
            vendor=vendor,
            customer=customer.name if customer else f"Unlinked {vendor} account",
            customer_url=f"{base}/admin/customers/customer/{customer.pk}/change/"
            if customer
            else "",
            connector=link.display_name,
            connector_kind=f"{vendor} account",
            last_success="",
            last_success_ago="",
            reason="",
            why=alert.detail or alert.summary,
            sort=(KIND_ORDER.get(alert.kind, 9), 0),
        )
    elif alert.connection is not None:
        connection = alert.connection
        vendor = provider_label(connection.provider)
        last = connection.last_success_at
        item.update(
            vendor=vendor,
            customer="Vectis",
            customer_url="",
            connector=connection.name,
            connector_kind=f"{vendor} sync",
            last_success=in_message(last),
            last_success_ago=hours_ago(last, now),
            reason="" if alert.kind == Alert.Kind.TOKEN_EXPIRY else connection.last_error,
            why=alert.detail or connection.last_error or alert.summary,
            sort=(KIND_ORDER.get(alert.kind, 9), last.timestamp() if last else 0),
        )
    return item


def clean_header(text: str) -> str:
    """Untrusted names must not break or inject mail headers."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def build_subject(items: list[dict[str, Any]]) -> str:
    active = [i for i in items if i["event"] != AlertEvent.Kind.RESOLVED]
    resolved = [i for i in items if i["event"] == AlertEvent.Kind.RESOLVED]
    parts = []
    for kind, (singular, plural) in KIND_NOUNS.items():
        count = sum(1 for i in active if i["kind"] == kind)
        if count:
            parts.append(f"{count} {singular if count == 1 else plural}")
    if resolved:
        parts.append(f"{len(resolved)} resolved")
    worst = min(active or resolved, key=lambda i: i.get("sort", (9, 0)))
    subject = (
        f"[Vectis] {', '.join(parts)} — {worst.get('customer', '')}: {worst.get('connector', '')}"
    )
    return clean_header(subject)[:250]


def one_row_per_alert(events: list[AlertEvent]) -> list[AlertEvent]:
    """An alert whose messages waited (a maintenance window, a parent alert) has piled
    up reminders: its opening — or else its latest reminder — stands for them all, and
    a reminder of an alert whose resolution is in the same message says nothing."""
    openings = {e.alert_id for e in events if e.kind == AlertEvent.Kind.OPENED}
    resolutions = {e.alert_id for e in events if e.kind == AlertEvent.Kind.RESOLVED}
    latest: dict[int, AlertEvent] = {}
    for event in events:
        if event.kind == AlertEvent.Kind.REMINDER:
            seen = latest.get(event.alert_id)
            if seen is None or (event.at, event.pk or 0) >= (seen.at, seen.pk or 0):
                latest[event.alert_id] = event
    return [
        event
        for event in events
        if event.kind != AlertEvent.Kind.REMINDER
        or (
            event.alert_id not in openings
            and event.alert_id not in resolutions
            and latest[event.alert_id] is event
        )
    ]


def compose(events: list[AlertEvent], *, now: datetime) -> Message:
    """One recipient's message about these history entries (one row per alert and
    entry kind: see `one_row_per_alert`)."""
    rows = one_row_per_alert(events)
    items = sorted((message_item(e, now) for e in rows), key=lambda i: i.get("sort", (9, 0)))
    context = {
        "new": [i for i in items if i["event"] == AlertEvent.Kind.OPENED],
        "reminders": [i for i in items if i["event"] == AlertEvent.Kind.REMINDER],
        "resolved": [i for i in items if i["event"] == AlertEvent.Kind.RESOLVED],
        "base_url": settings.VECTIS_BASE_URL.rstrip("/"),
        "now": now,
    }
    return Message(
        subject=build_subject(items),
        text=render_to_string("emails/alerts-body.txt", context),
        html=render_to_string("emails/alerts-body.html", context),
    )


def compose_sections(
    *,
    subject: str,
    heading: str,
    intro: str,
    sections: list[tuple[str, list[AlertEvent]]],
    now: datetime,
    keep_order: bool = False,
) -> Message:
    """A message in titled sections (a maintenance summary, a digest, an escalation),
    each row the same as in an alert message. An alert that is only still open is
    passed as an unsaved history entry of kind "open"."""
    rendered: list[dict[str, Any]] = []
    for title, events in sections:
        if events:
            items = [message_item(e, now) for e in events]
            if not keep_order:
                items.sort(key=lambda i: i.get("sort", (9, 0)))
            rendered.append({"title": title, "items": items})
    context = {
        "heading": heading,
        "intro": intro,
        "sections": rendered,
        "base_url": settings.VECTIS_BASE_URL.rstrip("/"),
        "now": now,
    }
    return Message(
        subject=clean_header(subject)[:250],
        text=render_to_string("emails/alerts-sections.txt", context),
        html=render_to_string("emails/alerts-sections.html", context),
    )
