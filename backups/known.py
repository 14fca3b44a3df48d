"""What a connection's stored data already says, for a provider deciding what to read
this sync (so requests grow with changes and failures, not with the fleet): the job days
read per account, failures counted per connector, statuses with their error codes, when
each account's seats were read, and which accounts are excluded. A fixed number of
queries, whatever the size."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta

from integrations.models import Connection

from .jobs import HISTORY_DAYS
from .models import AccountLink, BackupConnector, BackupConnectorStatus, BackupJobDay
from .snapshot import ConnectorSnapshot


@dataclass
class KnownJobDays:
    """What a connection's stored job days say, for the provider deciding what to read:
    per account, the days read (and whether each was closed); per (connector, day), how
    many jobs had failed or ended incomplete (a rise means a new failure)."""

    days: dict[str, dict[date, bool]] = field(default_factory=dict)
    failures: dict[tuple[str, date], int] = field(default_factory=dict)
    # (connector, day) whose failure the job history has not explained yet.
    pending: set[tuple[str, date]] = field(default_factory=set)

    def closed(self, account: str, day: date) -> bool:
        return self.days.get(account, {}).get(day, False)

    def read(self, account: str, day: date) -> bool:
        return day in self.days.get(account, {})


def known_job_days(
    connection: Connection, *, today: date, accounts: Collection[str] | None = None
) -> KnownJobDays:
    """Two queries, whatever the fleet's size (`accounts`: only these accounts', for a
    part of a sync)."""
    oldest = today - timedelta(days=HISTORY_DAYS - 1)
    known = KnownJobDays()
    mine = BackupJobDay.objects.filter(connector__connection=connection)
    if accounts is not None:
        mine = mine.filter(connector__account_link__external_id__in=list(accounts))
    rows = (
        mine.filter(day__gte=oldest)
        .values_list("connector__account_link__external_id", "day", "closed")
        .distinct()
    )
    for account, day, closed in rows:
        if account is None:
            continue
        days = known.days.setdefault(account, {})
        days[day] = days.get(day, False) or closed
    recent = mine.filter(day__gte=today - timedelta(days=1)).values_list(
        "connector__external_id",
        "day",
        "incomplete",
        "unsuccessful",
        "last_failure_at",
        "last_failure_exact",
    )
    for connector, day, incomplete, unsuccessful, failed_at, exact in recent:
        known.failures[(connector, day)] = incomplete + unsuccessful
        if failed_at is not None and not exact:
            known.pending.add((connector, day))
    return known


@dataclass(frozen=True)
class StoredStatus:
    health: str
    reason: str
    error_code: str
    fix_text: str
    help_url: str
    error_checked_at: datetime | None


def stored_statuses(
    connection: Connection, *, accounts: Collection[str] | None = None
) -> dict[str, StoredStatus]:
    """Connector external id -> its stored status (health, reason, error code, fix)."""
    mine = BackupConnectorStatus.objects.filter(connector__connection=connection)
    if accounts is not None:
        mine = mine.filter(connector__account_link__external_id__in=list(accounts))
    rows = mine.values_list(
        "connector__external_id",
        "health",
        "reason",
        "error_code",
        "fix_text",
        "help_url",
        "error_checked_at",
    )
    return {row[0]: StoredStatus(*row[1:]) for row in rows}


@dataclass
class StoredConnectorList:
    """An account's connectors as its list was last read (and when: None, never), in the
    shape the sync reads them (without status or job days)."""

    listed_at: datetime | None
    connectors: list[ConnectorSnapshot] = field(default_factory=list)


def stored_connector_lists(
    connection: Connection, *, accounts: Collection[str]
) -> dict[str, StoredConnectorList]:
    """Account external id -> when its connector list was read and the connectors it
    holds (not removed): two queries for a part of a sync."""
    lists = {
        account: StoredConnectorList(listed_at)
        for account, listed_at in AccountLink.objects.filter(
            connection=connection, external_id__in=list(accounts)
        ).values_list("external_id", "connectors_listed_at")
    }
    # The snapshot's own fields, each a column of the same name (its status and job days
    # are not part of the list).
    listed = [f.name for f in fields(ConnectorSnapshot) if f.name not in ("status", "jobs")]
    rows = (
        BackupConnector.objects.filter(
            connection=connection,
            account_link__external_id__in=list(accounts),
            removed_at__isnull=True,
        )
        .order_by()
        .values("account_link__external_id", *listed)
    )
    for row in rows:
        account = row.pop("account_link__external_id")
        if account in lists:
            lists[account].connectors.append(ConnectorSnapshot(**row))
    return lists


def excluded_accounts(connection: Connection) -> set[str]:
    """External ids of the accounts an admin excluded: a provider need not read them (their
    connectors leave the dashboard and the alert rules, so reading them would only cost
    requests — and a failure there must not make the run partial)."""
    return set(
        AccountLink.objects.filter(
            connection=connection, state=AccountLink.State.EXCLUDED
        ).values_list("external_id", flat=True)
    )


def seat_reads(
    connection: Connection, *, accounts: Collection[str] | None = None
) -> dict[str, datetime | None]:
    """Account external id -> when its seat usage was last read."""
    links = AccountLink.objects.filter(connection=connection)
    if accounts is not None:
        links = links.filter(external_id__in=list(accounts))
    return dict(links.values_list("external_id", "seats_checked_at"))
