"""Seat usage per vendor account (`backup_account_seats`): writing a sync's reading.

Two readings arrive at different rates: an account's full seat list (every licensed
resource, read daily) replaces its rows; its seat-limit violations (read every sync)
mark the resources named over their limit, with the grace expiry, and clear the mark on
the account's other resources it had marked (a violation only the seat list showed — a
resource outside the seat groups the violations reading asks about — stays until the
next seat list). An account whose reading failed keeps its rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from integrations.sql import update_rows

from .models import AccountLink, AccountSeat
from .snapshot import AccountSnapshot, SeatSnapshot

BATCH_SIZE = 1000
SEAT_FIELDS = ("label", "usage", "limit", "violated", "grace_expires_at")


def _desired(seat: SeatSnapshot) -> dict[str, object]:
    return {
        "label": (seat.label or seat.resource)[:255],
        "usage": max(0, seat.usage),
        "limit": None if seat.limit is None else max(0, seat.limit),
        "violated": seat.violated,
        "grace_expires_at": seat.grace_expires_at if seat.violated else None,
    }


def apply_seats(
    accounts: Sequence[AccountSnapshot], links: dict[str, AccountLink], *, now: datetime
) -> int:
    """Write seats and violations of the accounts that carry them; returns rows written."""
    touched = [
        links[a.external_id].pk
        for a in accounts
        if (a.seats is not None or a.seat_violations is not None) and a.external_id in links
    ]
    if not touched:
        return 0
    existing: dict[tuple[int, str], AccountSeat] = {}
    by_link: dict[int, dict[str, AccountSeat]] = {}
    for row in AccountSeat.objects.filter(account_link_id__in=touched):
        existing[(row.account_link_id, row.resource)] = row
        by_link.setdefault(row.account_link_id, {})[row.resource] = row
    created: list[AccountSeat] = []
    changed: list[AccountSeat] = []
    gone: list[int] = []
    checked: list[int] = []

    def put(link_id: int, seat: SeatSnapshot) -> None:
        desired = _desired(seat)
        row = existing.get((link_id, seat.resource[:100]))
        if row is None:
            created.append(
                AccountSeat(
                    account_link_id=link_id, resource=seat.resource[:100], checked_at=now, **desired
                )
            )
            return
        if any(getattr(row, k) != v for k, v in desired.items()):
            for key, value in desired.items():
                setattr(row, key, value)
            row.checked_at = now
            changed.append(row)

    for account in accounts:
        link = links.get(account.external_id)
        if link is None:
            continue
        mine = by_link.get(link.pk, {})
        if account.seats is not None:
            listed = {seat.resource[:100] for seat in account.seats}
            for seat in account.seats:
                put(link.pk, seat)
            gone += [row.pk for res, row in mine.items() if res not in listed]
            checked.append(link.pk)
        elif account.seat_violations is not None:
            named = {seat.resource[:100] for seat in account.seat_violations}
            for seat in account.seat_violations:
                put(link.pk, seat)
            for res, row in mine.items():
                # Only what the violations reading reported (it carries a grace expiry)
                # ends with it; a violation the daily seat list showed waits for the next.
                if res not in named and row.violated and row.grace_expires_at is not None:
                    row.violated, row.grace_expires_at, row.checked_at = False, None, now
                    changed.append(row)
    AccountSeat.objects.bulk_create(created, batch_size=BATCH_SIZE)
    update_rows(AccountSeat, changed, [*SEAT_FIELDS, "checked_at"])
    if gone:
        AccountSeat.objects.filter(pk__in=gone).delete()
    if checked:
        AccountLink.objects.filter(pk__in=checked).update(seats_checked_at=now)
    return len(created) + len(changed) + len(gone)
