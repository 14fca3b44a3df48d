"""What the pages share: how a connector row reads, status badges, CSV responses."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, StreamingHttpResponse

from backups.jobs import format_rate, success_rate
from backups.models import BackupConnector, BackupStatus, ConnectorKind
from integrations.registry import provider_label

STATUS_LABELS = dict(BackupStatus.choices)
KIND_LABELS = dict(ConnectorKind.choices)
BADGE = {
    BackupStatus.OK: "vx-ok",
    BackupStatus.WARNING: "vx-warning",
    BackupStatus.FAILED: "vx-failed",
    BackupStatus.ONBOARDING: "vx-onboarding",
    BackupStatus.UNKNOWN: "vx-unknown",
}


def require(request: HttpRequest, *perms: str) -> None:
    if not request.user.has_perms(perms):
        raise PermissionDenied


def connector_row(connector: BackupConnector, *, strip: Any = None) -> dict[str, Any]:
    """How a connector reads on every page; its success rate comes from
    `backups.jobs.success_rate_annotations` when the query carried them."""
    status_row = getattr(connector, "backup_status", None)
    rate = success_rate(
        getattr(connector, "jobs_successful", None), getattr(connector, "jobs_finished", None)
    )
    status = getattr(connector, "status_now", None) or (
        status_row.status if status_row else BackupStatus.UNKNOWN
    )
    return {
        "connector": connector,
        "customer": connector.customer,
        "account": connector.account_link,
        "status": status,
        "status_label": STATUS_LABELS.get(status, status),
        "badge": BADGE.get(status, "vx-unknown"),
        "kind_label": KIND_LABELS.get(connector.kind, connector.kind),
        "last_success": status_row.last_success_at if status_row else None,
        "last_backup": status_row.last_backup_at if status_row else None,
        "reason": (status_row.reason_text or status_row.reason) if status_row else "",
        # What the vendor says to do (its error code's sentence) and its help article.
        "fix": status_row.fix_text if status_row else "",
        "error_code": status_row.error_code if status_row else "",
        "help_url": status_row.help_url if status_row else "",
        "help_label": (status_row.help_label or "How to fix") if status_row else "",
        "success_rate": rate,
        "success_rate_text": format_rate(rate) if rate is not None else "",
        "strip": strip,
        "open_alert_id": getattr(connector, "open_alert_id", None),
        "vendor": provider_label(connector.connection.provider),
    }


def csv_response(
    filename: str, header: list[str], rows: Iterator[list[Any]]
) -> StreamingHttpResponse:
    class Echo:
        def write(self, value: str) -> str:
            return value

    writer = csv.writer(Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow(header)
        for row in rows:
            yield writer.writerow(row)

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
