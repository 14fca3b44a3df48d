"""The figures of a customer's monthly backup report, from what Vectis keeps: the
connectors, their daily job summaries (`BackupJobDay`, one row per connector per UTC day,
written by every sync), the alerts and the audit log's recovery events.

A day of a connector reads:
- **complete**: successful jobs, none failed or incomplete;
- **partial**: an incomplete job, none failed;
- **failed**: a failed job (the same verdict as the pages' strips, `BackupJobDay.outcome`);
- **none**: read, but no job finished (a gap);
- **unread**: no summary for the day (before the connector existed in Vectis, or a sync
  that could not read it): never counted as a success nor as a gap.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db.models import Q

from alerts.models import Alert
from backups.models import (
    AccountLink,
    AuditCategory,
    BackupAuditEvent,
    BackupConnector,
    BackupJobDay,
    JobOutcome,
)
from customers.models import Customer

from ..pages.rows import KIND_LABELS

RECOVERIES_LISTED = 200

DAY_WORDS = {
    "complete": "complete backup",
    "partial": "partly successful",
    "failed": "failed",
    "none": "no backup",
    "unread": "not read",
}


@dataclass(frozen=True)
class Month:
    first: date

    @classmethod
    def parse(cls, text: str) -> Month:
        """ "2026-11" -> November 2026; a clear sentence otherwise."""
        try:
            year, month = (int(part) for part in text.split("-"))
            return cls(date(year, month, 1))
        except ValueError:
            raise ValueError(
                f"“{text}” is not a month: write it as YYYY-MM, e.g. 2026-11."
            ) from None

    @property
    def days(self) -> list[date]:
        following = (self.first.replace(day=28) + timedelta(days=4)).replace(day=1)
        return [self.first + timedelta(days=n) for n in range((following - self.first).days)]

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, datetime.min.time(), tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.days[-1] + timedelta(days=1), datetime.min.time(), tzinfo=UTC)

    @property
    def label(self) -> str:
        return f"{self.first:%B %Y}"

    @property
    def key(self) -> str:
        return f"{self.first:%Y-%m}"


def recent_months(now: datetime, count: int) -> list[Month]:
    """The last `count` months, the one before this first (this one is not over yet)."""
    first = now.date().replace(day=1)
    months = []
    for _ in range(count):
        first = (first - timedelta(days=1)).replace(day=1)
        months.append(Month(first))
    return months


@dataclass
class ConnectorMonth:
    name: str
    kind: str
    days: list[tuple[date, str]]
    complete_days: int
    read_days: int
    longest_gap: int
    last_complete: datetime | None
    added: bool
    removed: bool

    @property
    def every_day(self) -> bool:
        return self.read_days > 0 and self.complete_days == self.read_days

    @property
    def missed_days(self) -> str:
        """The days of the month read without a complete backup: "10, 11, 20"."""
        return ", ".join(
            str(day.day) for day, outcome in self.days if outcome not in ("complete", "unread")
        )


@dataclass
class Report:
    customer: Customer
    month: Month
    msp_name: str
    connectors: list[ConnectorMonth]
    kinds: list[tuple[str, int]]
    protected: int
    not_yet_backed_up: int
    alerts_opened: int
    alerts_resolved: int
    resolve_median_hours: float | None
    resolve_worst_hours: float | None
    alerts_still_open: int
    recoveries: list[BackupAuditEvent]
    recovery_count: int
    added: int = 0
    removed: int = 0
    summary: str = ""
    notes: list[str] = field(default_factory=list)


# The day's outcome as the pages' strips read it (`BackupJobDay.outcome`), in the words
# of the report.
REPORT_DAY = {
    JobOutcome.SUCCESSFUL: "complete",
    JobOutcome.INCOMPLETE: "partial",
    JobOutcome.FAILED: "failed",
}


def day_outcome(row: BackupJobDay | None) -> str:
    if row is None:
        return "unread"
    return REPORT_DAY.get(JobOutcome(row.outcome), "none")


def _longest_gap(outcomes: list[str]) -> int:
    """The most days in a row without a complete backup (unread days do not count)."""
    longest = current = 0
    for outcome in outcomes:
        if outcome == "complete":
            current = 0
        elif outcome != "unread":
            current += 1
            longest = max(longest, current)
    return longest


def _last_complete(
    status: Any, rows: dict[tuple[int, date], BackupJobDay], connector_id: int, month: Month
) -> datetime | None:
    """The last complete backup by the month's end: the status's when it is before the
    end (exact); else, for a report made later, the end of the last complete day's jobs
    in the month (a later backup is not this month's news)."""
    latest = status.last_success_at if status is not None else None
    if latest is not None and latest < month.end:
        return latest  # type: ignore[no-any-return]
    for day in reversed(month.days):
        row = rows.get((connector_id, day))
        if row is not None and day_outcome(row) == "complete":
            return row.last_job_end_at or datetime.combine(day, datetime.max.time(), tzinfo=UTC)
    return None


def monthly_report(customer: Customer, month: Month, *, msp_name: str) -> Report:
    """Everything the report says, in a fixed number of queries (one per kind of data)."""
    connectors = list(
        BackupConnector.objects.filter(customer=customer, first_seen_at__lt=month.end)
        .filter(Q(removed_at__isnull=True) | Q(removed_at__gte=month.start))
        # Excluded accounts are out of every count, as on the pages (live_connectors).
        .exclude(account_link__state=AccountLink.State.EXCLUDED)
        .select_related("backup_status")
        .order_by("name", "id")
    )
    rows: dict[tuple[int, date], BackupJobDay] = {
        (row.connector_id, row.day): row
        for row in BackupJobDay.objects.filter(
            connector__in=connectors, day__gte=month.first, day__lte=month.days[-1]
        )
    }
    months: list[ConnectorMonth] = []
    for connector in connectors:
        outcomes = [(day, day_outcome(rows.get((connector.pk, day)))) for day in month.days]
        only = [outcome for _, outcome in outcomes]
        status = getattr(connector, "backup_status", None)
        months.append(
            ConnectorMonth(
                name=connector.name,
                kind=str(KIND_LABELS.get(connector.kind, connector.kind)),
                days=outcomes,
                complete_days=only.count("complete"),
                read_days=len(only) - only.count("unread"),
                longest_gap=_longest_gap(only),
                last_complete=_last_complete(status, rows, connector.pk, month),
                added=connector.first_seen_at >= month.start,
                removed=connector.removed_at is not None and connector.removed_at < month.end,
            )
        )
    kinds: dict[str, int] = {}
    for item in months:
        if not item.removed:
            kinds[item.kind] = kinds.get(item.kind, 0) + 1
    live = [item for item in months if not item.removed]
    alerts = Alert.objects.filter(
        Q(connector__customer=customer) | Q(account_link__customer=customer)
    )
    opened = list(
        alerts.filter(opened_at__gte=month.start, opened_at__lt=month.end).values_list(
            "opened_at", "resolved_at"
        )
    )
    resolved_hours = [
        (resolved - opened_at).total_seconds() / 3600
        for opened_at, resolved in opened
        if resolved is not None and resolved < month.end
    ]
    still_open = alerts.filter(opened_at__lt=month.end).filter(
        Q(resolved_at__isnull=True) | Q(resolved_at__gte=month.end)
    )
    recovery_events = BackupAuditEvent.objects.filter(
        customer=customer,
        category=AuditCategory.RECOVERY,
        is_own_read=False,
        occurred_at__gte=month.start,
        occurred_at__lt=month.end,
    )
    # The PDF lists the first RECOVERIES_LISTED; the summary counts them all.
    recoveries = list(recovery_events.order_by("occurred_at", "id")[:RECOVERIES_LISTED])
    recovery_count = (
        len(recoveries) if len(recoveries) < RECOVERIES_LISTED else recovery_events.count()
    )
    report = Report(
        customer=customer,
        month=month,
        msp_name=msp_name,
        connectors=months,
        kinds=sorted(kinds.items()),
        protected=sum(1 for item in live if item.last_complete is not None),
        not_yet_backed_up=sum(1 for item in live if item.last_complete is None),
        alerts_opened=len(opened),
        alerts_resolved=len(resolved_hours),
        resolve_median_hours=statistics.median(resolved_hours) if resolved_hours else None,
        resolve_worst_hours=max(resolved_hours) if resolved_hours else None,
        alerts_still_open=still_open.count(),
        recoveries=recoveries,
        recovery_count=recovery_count,
        added=sum(1 for item in months if item.added),
        removed=sum(1 for item in months if item.removed),
    )
    report.summary = summarize(report)
    return report


def summarize(report: Report) -> str:
    """The plain-language paragraph at the top."""
    live = [item for item in report.connectors if not item.removed]
    if not live:
        return f"{report.customer.name} had no backed-up service in {report.month.label}."
    every = [item for item in live if item.every_day]
    sentences = []
    if len(every) == len(live):
        sentences.append(
            f"All {len(live)} backups ran completely on every day Vectis read in "
            f"{report.month.label}."
        )
    else:
        misses = [
            f"{item.name} ({item.read_days - item.complete_days} "
            f"day{'s' if item.read_days - item.complete_days != 1 else ''} without a complete "
            "backup)"
            for item in live
            if not item.every_day and item.read_days
        ]
        sentences.append(
            f"{len(every)} of {len(live)} backups ran completely every day in "
            f"{report.month.label}" + (f"; the exceptions: {', '.join(misses)}." if misses else ".")
        )
    unread = [item.name for item in live if item.read_days == 0]
    if unread:
        sentences.append(f"No job data was available for {', '.join(unread)}.")
    if report.alerts_opened:
        sentences.append(
            f"{report.alerts_opened} alert{'s' if report.alerts_opened != 1 else ''} opened, "
            f"{report.alerts_resolved} resolved in the month"
            + (
                f", {report.alerts_still_open} still open at its end."
                if report.alerts_still_open
                else "."
            )
        )
    else:
        sentences.append("No alert was raised.")
    if report.recovery_count:
        sentences.append(
            f"{report.recovery_count} restore or download "
            f"{'operations were' if report.recovery_count != 1 else 'operation was'} performed."
        )
    return " ".join(sentences)
