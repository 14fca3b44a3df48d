"""Maintenance windows: when they are on, what they cover, and the summary when one ends.

While a window is on, evaluation goes on — alerts open and resolve — but the messages
about the alerts it covers are held (alerts/lifecycle.claim_events_to_notify leaves them
unclaimed). When an occurrence ends, the first evaluation after it writes one summary per
recipient and channel: what is still open, and what opened and resolved meanwhile (a
resolution is never swallowed), and marks the held entries told.

Weekly windows are wall-clock times in their time zone (zoneinfo): "Sundays 02:00 for 3
hours" starts at 02:00 local time on both sides of a daylight-saving change, and lasts
three real hours.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from django.db.models import Q

from backups.models import BackupConnector

from .models import MaintenanceWindow

Occurrence = tuple[datetime, datetime]


def _zone(window: MaintenanceWindow) -> ZoneInfo:
    return ZoneInfo(window.timezone or "UTC")


def occurrences(window: MaintenanceWindow, *, around: datetime) -> list[Occurrence]:
    """The window's occurrences that can touch the week before and after `around`."""
    if window.repeat == MaintenanceWindow.Repeat.ONCE:
        if window.starts_at is None or window.ends_at is None:
            return []
        return [(window.starts_at, window.ends_at)]
    if window.start_time is None or not window.duration_minutes or not window.weekdays:
        return []
    zone = _zone(window)
    local_day = around.astimezone(zone).date()
    found = []
    for offset in range(-8, 9):
        day = local_day + timedelta(days=offset)
        if day.isoweekday() not in window.weekdays:
            continue
        start = datetime.combine(day, window.start_time, tzinfo=zone).astimezone(UTC)
        found.append((start, start + timedelta(minutes=window.duration_minutes)))
    return found


def current(window: MaintenanceWindow, now: datetime) -> Occurrence | None:
    """The occurrence `now` falls in, if any."""
    return next(((s, e) for s, e in occurrences(window, around=now) if s <= now < e), None)


def latest_ended(window: MaintenanceWindow, now: datetime) -> Occurrence | None:
    """The latest occurrence that has ended by `now`."""
    ended = [(s, e) for s, e in occurrences(window, around=now) if e <= now]
    return max(ended, key=lambda o: o[1]) if ended else None


def active_windows(now: datetime) -> list[MaintenanceWindow]:
    candidates = MaintenanceWindow.objects.filter(
        Q(repeat=MaintenanceWindow.Repeat.WEEKLY) | Q(starts_at__lte=now, ends_at__gt=now)
    )
    return [window for window in candidates if current(window, now) is not None]


def covered(windows: Iterable[MaintenanceWindow]) -> Q | None:
    """The alerts these windows cover: their customer's, connector's or connection's."""
    condition: Q | None = None
    for window in windows:
        if window.connector_id is not None:
            part = Q(connector_id=window.connector_id)
        elif window.customer_id is not None:
            part = Q(connector__customer_id=window.customer_id) | Q(
                account_link__customer_id=window.customer_id
            )
        elif window.connection_id is not None:
            part = (
                Q(connector__connection_id=window.connection_id)
                | Q(connection_id=window.connection_id)
                | Q(account_link__connection_id=window.connection_id)
            )
        else:
            continue
        condition = part if condition is None else condition | part
    return condition


def held_alerts(now: datetime) -> Q | None:
    """The alerts whose messages are held right now (None: none are)."""
    return covered(active_windows(now))


def connectors_in_maintenance(connector_ids: Iterable[int], now: datetime) -> set[int]:
    """Of these connectors, those a window covers now (the dashboard marks them)."""
    windows = active_windows(now)
    if not windows:
        return set()
    scope = Q()
    for window in windows:
        if window.connector_id is not None:
            scope |= Q(pk=window.connector_id)
        elif window.customer_id is not None:
            scope |= Q(customer_id=window.customer_id)
        elif window.connection_id is not None:
            scope |= Q(connection_id=window.connection_id)
    return set(
        BackupConnector.objects.filter(scope, pk__in=list(connector_ids)).values_list(
            "pk", flat=True
        )
    )


def alerts_of(window: MaintenanceWindow) -> Q:
    scope = covered([window])
    return scope if scope is not None else Q(pk__in=[])
