"""Backup-job outcomes per connector per UTC day (`backup_job_days`): what the sync
already knows (so a provider reads only what it lacks), writing a sync's reading, and
the figures the pages and rules show — the 28-day strip and the success rate.

A success rate counts finished jobs only: successful / (successful + incomplete +
unsuccessful) over the days that were read; cancelled and running jobs are left out, and
no finished job means no rate (never 100 %). Keepit schedules about two backups a day,
but the real number varies, so nothing here assumes a number of jobs per day.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.db.models import F, OuterRef, Subquery, Sum

from integrations.sql import update_rows

from .models import BackupConnector, BackupJobDay, JobOutcome
from .snapshot import JobDaySnapshot

HISTORY_DAYS = 28
# The success rate the pages show (the rule's days are its own).
SUCCESS_RATE_DAYS = 7
BATCH_SIZE = 1000
COUNT_FIELDS = ("successful", "incomplete", "unsuccessful", "cancelled", "in_progress")


def apply_job_days(
    connectors: dict[str, BackupConnector],
    readings: Iterable[tuple[str, JobDaySnapshot]],
    *,
    now: datetime,
) -> int:
    """Write a sync's job-day readings ((connector external id, snapshot) pairs): new
    rows in bulk, changed rows in bulk, unchanged rows not at all. The last job end only
    moves forward, and a failure is replaced only by a later one. Returns rows written."""
    wanted: dict[tuple[int, date], JobDaySnapshot] = {}
    for external_id, snapshot in readings:
        connector = connectors.get(external_id)
        if connector is not None:
            wanted[(connector.pk, snapshot.day)] = snapshot
    if not wanted:
        return 0
    ids = {pk for pk, _day in wanted}
    days = {day for _pk, day in wanted}
    existing = {
        (row.connector_id, row.day): row
        for row in BackupJobDay.objects.filter(connector_id__in=ids, day__in=days)
    }
    created: list[BackupJobDay] = []
    changed: list[BackupJobDay] = []
    for (pk, day), snapshot in wanted.items():
        row = existing.get((pk, day))
        fresh = row is None
        if row is None:
            row = BackupJobDay(connector_id=pk, day=day, checked_at=now)
        desired: dict[str, Any] = {name: getattr(snapshot, name) for name in COUNT_FIELDS}
        desired["closed"] = row.closed or snapshot.closed
        if snapshot.last_job_end_at is not None and (
            row.last_job_end_at is None or snapshot.last_job_end_at > row.last_job_end_at
        ):
            desired["last_job_end_at"] = snapshot.last_job_end_at
        failure = snapshot.failure
        # A later failure replaces the stored one; so does the exact account (from the
        # vendor's job history) of a failure first stored only as "seen at".
        if failure is not None and (
            row.last_failure_at is None
            or failure.at >= row.last_failure_at
            or (failure.exact and not row.last_failure_exact)
        ):
            desired["last_failure_at"] = failure.at
            desired["last_failure_outcome"] = failure.outcome
            desired["last_error"] = failure.error
            desired["last_failure_exact"] = failure.exact
        if not fresh and all(getattr(row, k) == v for k, v in desired.items()):
            continue
        for key, value in desired.items():
            setattr(row, key, value)
        row.checked_at = now
        (created if fresh else changed).append(row)
    BackupJobDay.objects.bulk_create(created, batch_size=BATCH_SIZE)
    update_rows(
        BackupJobDay,
        changed,
        [
            *COUNT_FIELDS,
            "closed",
            "last_job_end_at",
            "last_failure_at",
            "last_failure_outcome",
            "last_error",
            "last_failure_exact",
            "checked_at",
        ],
    )
    return len(created) + len(changed)


# --- what the pages and rules show -----------------------------------------------------------


def success_rate_annotations(*, today: date, days: int) -> dict[str, Subquery]:
    """`annotate()` arguments giving each connector its successful and finished backup
    jobs over the last `days` UTC days (index job_day_unique_connector)."""
    window = (
        BackupJobDay.objects.filter(
            connector_id=OuterRef("pk"), day__gt=today - timedelta(days=days), day__lte=today
        )
        .order_by()
        .values("connector_id")
    )
    finished = F("successful") + F("incomplete") + F("unsuccessful")
    return {
        "jobs_successful": Subquery(window.annotate(n=Sum("successful")).values("n")),
        "jobs_finished": Subquery(window.annotate(n=Sum(finished)).values("n")),
    }


def success_rate(successful: int | None, finished: int | None) -> float | None:
    """Percent of finished jobs that succeeded; None without a finished job."""
    if not finished:
        return None
    return 100.0 * (successful or 0) / finished


def format_rate(rate: float) -> str:
    """One decimal, rounded down, so 89.96 % never reads "90.0 %" under a 90 % rule."""
    return f"{math.floor(rate * 10) / 10:.1f} %"


@dataclass(frozen=True)
class StripCell:
    """One day of a connector's outcome strip."""

    day: date
    outcome: str  # a JobOutcome value, or "unread" (no reading) / "before" (not there yet)
    title: str


def outcome_strips(
    connectors: Sequence[BackupConnector], *, today: date, days: int = HISTORY_DAYS
) -> dict[int, list[StripCell]]:
    """Per connector, one cell per day for the last `days` days, oldest first: the day's
    outcome when it was read, "unread" when it was not, "before" before the connector
    existed. One query."""
    oldest = today - timedelta(days=days - 1)
    rows: dict[int, dict[date, BackupJobDay]] = defaultdict(dict)
    for row in BackupJobDay.objects.filter(
        connector_id__in=[c.pk for c in connectors], day__gte=oldest, day__lte=today
    ):
        rows[row.connector_id][row.day] = row
    labels = dict(JobOutcome.choices)
    strips: dict[int, list[StripCell]] = {}
    for connector in connectors:
        born = (connector.vendor_created_at or connector.first_seen_at).date()
        cells = []
        for offset in range(days):
            day = oldest + timedelta(days=offset)
            found = rows[connector.pk].get(day)
            if found is not None:
                cells.append(StripCell(day, found.outcome, _cell_title(found, labels, today)))
            elif day < born:
                cells.append(
                    StripCell(day, "before", f"{day:%a %d %b}: the connector did not exist")
                )
            else:
                cells.append(StripCell(day, "unread", f"{day:%a %d %b}: no job data read"))
        strips[connector.pk] = cells
    return strips


def _cell_title(row: BackupJobDay, labels: dict[str, str], today: date) -> str:
    parts = [f"{row.day:%a %d %b}: {labels[row.outcome]}"]
    counts = [
        f"{getattr(row, name)} {name.replace('_', ' ')}"
        for name in ("successful", "incomplete", "unsuccessful", "cancelled", "in_progress")
        if getattr(row, name)
    ]
    if counts:
        parts.append(", ".join(counts))
    if row.day == today:
        parts.append("so far today")
    elif not row.closed:
        parts.append("not final: the day was not read after it ended")
    if row.last_error:
        parts.append(f"error: {row.last_error}")
    return " — ".join(parts)
