"""Time, one way. Every page shows a moment as its age ("3 hours ago") with the absolute
time and zone on hover, in the viewer's time zone (their own setting, else the MSP's
`TIME_ZONE`); e-mails, webhooks' text and CSV files show the absolute time in ISO 8601
with its offset (alerts/compose.py `in_message`). Templates use the `when` filter
(vectis/templatetags/vectis_time.py);
a test fails if a template formats a moment any other way."""

from __future__ import annotations

from datetime import datetime, tzinfo

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince, timeuntil


def absolute(moment: datetime) -> str:
    """ "2026-12-06 09:12 CET" in the active time zone (the viewer's)."""
    local = timezone.localtime(moment)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def iso(moment: datetime | None, zone: tzinfo | None = None) -> str:
    """ISO 8601 with its offset, to the second, in `zone` (default: the active one, the
    viewer's): CSV exports. A CSV passes the zone it took when the export started, as its
    rows are written after the view returns."""
    if moment is None:
        return ""
    return timezone.localtime(moment, zone).isoformat(timespec="seconds")


def age(moment: datetime, now: datetime) -> str:
    """ "3 hours ago", "in 2 days", "just now"."""
    seconds = abs((now - moment).total_seconds())
    if seconds < 60:
        return "just now"
    # "3 hours", "2 days"; from a week on also the days ("1 week, 3 days"): a grace
    # period or a deletion date is counted in days.
    depth = 2 if seconds >= 7 * 86400 else 1
    if moment <= now:
        return f"{timesince(moment, now, depth=depth)} ago"
    return f"in {timeuntil(moment, now, depth=depth)}"


def when(moment: datetime | None, now: datetime | None = None, *, empty: str = "—") -> SafeString:
    """The one way a page shows a moment: its age, the absolute time on hover."""
    if moment is None:
        return format_html("{}", empty)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        moment.isoformat(),
        absolute(moment),
        age(moment, now or timezone.now()),
    )


def stamp(moment: datetime | None, *, empty: str = "—") -> SafeString:
    """The absolute time where a list must be scanned by date (timelines): the age on
    hover instead."""
    if moment is None:
        return format_html("{}", empty)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        moment.isoformat(),
        age(moment, timezone.now()),
        absolute(moment),
    )
