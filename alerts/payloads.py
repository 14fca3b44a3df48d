"""The generic webhook's JSON body, version 1 (documented in the README: a PSA or an
automation tool builds on it, so fields are only ever added; a breaking change is a new
`version`).

    {
      "version": 1,
      "type": "alerts" | "test" | "digest" | "maintenance" | "escalation",
      "sent_at": "2026-12-06T09:00:00Z",
      "subject": "[Vectis] 1 backup failed — Contoso Ltd: Contoso Mail",
      "text": "<the message as plain text>",
      "alerts": [
        {
          "id": 42, "event": "opened" | "reminder" | "resolved" | "escalated" | "open",
          "kind": "backup_failed", "kind_label": "Backup failed",
          "severity": "critical" | "warning",
          "rule": {"id": 3, "name": "Failed backups"} | null,
          "customer": {"id": 7, "name": "Contoso Ltd"} | null,
          "connector": {"id": 11, "name": "Contoso Mail", "kind": "m365"} | null,
          "connection": {"id": 1, "name": "Keepit US"} | null,
          "summary": "…", "reason": "…", "detail": "…",
          "state": "open" | "acknowledged" | "resolved",
          "opened_at": "…Z", "resolved_at": "…Z" | null, "acknowledged_at": "…Z" | null,
          "links": {"alert": "https://…", "acknowledge": "https://…" | null,
                    "snooze_4h": "https://…" | null}
        }
      ]
    }

Times are ISO 8601 in UTC with a `Z`. The body is signed (alerts/channels.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from .actions import action_url
from .models import Alert, Severity

VERSION = 1


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def alert_json(alert: Alert, *, event: str) -> dict[str, Any]:
    base = settings.VECTIS_BASE_URL.rstrip("/")
    connector = alert.connector
    customer = connector.customer if connector is not None else None
    if customer is None and alert.account_link is not None:
        customer = alert.account_link.customer
    connection = alert.connection or (connector.connection if connector is not None else None)
    if connection is None and alert.account_link is not None:
        connection = alert.account_link.connection
    open_ = alert.resolved_at is None
    return {
        "id": alert.pk,
        "event": event,
        "kind": alert.kind,
        "kind_label": alert.get_kind_display(),
        "severity": "critical" if alert.severity >= Severity.CRITICAL else "warning",
        "rule": {"id": alert.rule.pk, "name": alert.rule.name} if alert.rule else None,
        "customer": {"id": customer.pk, "name": customer.name} if customer else None,
        "connector": {"id": connector.pk, "name": connector.name, "kind": connector.kind}
        if connector
        else None,
        "connection": {"id": connection.pk, "name": connection.name} if connection else None,
        "summary": alert.summary,
        "reason": alert.reason,
        "detail": alert.detail,
        "state": alert.state,
        "opened_at": iso(alert.opened_at),
        "resolved_at": iso(alert.resolved_at),
        "acknowledged_at": iso(alert.acknowledged_at),
        "links": {
            "alert": f"{base}/admin/alerts/alert/{alert.pk}/change/",
            "acknowledge": action_url(alert, "acknowledge")
            if open_ and alert.state == Alert.State.OPEN
            else None,
            "snooze_4h": action_url(alert, "snooze") if open_ else None,
        },
    }


def payload(
    kind: str, *, subject: str, text: str, now: datetime, alerts: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "version": VERSION,
        "type": kind,
        "sent_at": iso(now),
        "subject": subject,
        "text": text,
        "alerts": alerts,
    }
