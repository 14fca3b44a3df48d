"""The ingest of a first sync, where the audit log is stored beside the account parts:
its events reach their connectors as soon as the part adding them is committed, not in
one big UPDATE at the run's end."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext

from backups.ingest import CONNECTOR_LOOKUP_SECONDS, Ingest
from backups.models import AccountLink, BackupAuditEvent
from backups.snapshot import AccountSnapshot, AuditEventSnapshot, ConnectorSnapshot
from integrations.models import Connection

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def events(guids: Sequence[str], *, per: int, start: int = 0) -> list[AuditEventSnapshot]:
    return [
        AuditEventSnapshot(
            dedup_key=f"{guid}-{n}",
            occurred_at=NOW - timedelta(minutes=n),
            account_external_id="acc-1",
            connector_external_id=guid,
            message=f"Backup of {guid}",
        )
        for guid in guids
        for n in range(start, start + per)
    ]


def store_part(connection: Connection, guids: Sequence[str]) -> Ingest:
    """One account part adding these connectors, stored as a sync stores it."""
    part = Ingest(connection, now=NOW)
    part.apply_part(
        [
            AccountSnapshot(
                external_id="acc-1",
                company_name="Contoso",
                connectors=tuple(ConnectorSnapshot(guid, guid, "m365") for guid in guids),
            )
        ]
    )
    return part


def linked_by_guid() -> dict[str, tuple[int, int]]:
    """Per connector guid: its stored events, and how many of them know their connector."""
    counts: dict[str, tuple[int, int]] = {}
    for guid, connector_id in BackupAuditEvent.objects.values_list(
        "connector_external_id", "connector_id"
    ):
        total, linked = counts.get(guid, (0, 0))
        counts[guid] = (total + 1, linked + (connector_id is not None))
    return counts


@pytest.fixture
def connection() -> Connection:
    connection = Connection.objects.create(provider="keepit", name="Keepit", enabled=True)
    plan = Ingest(connection, now=NOW)
    plan.apply_accounts([AccountSnapshot(external_id="acc-1", company_name="Contoso")])
    assert AccountLink.objects.get().state == AccountLink.State.LINKED
    return connection


def test_a_part_links_the_events_stored_before_its_connectors_once_it_is_stored(
    connection: Connection,
) -> None:
    audit = Ingest(connection, now=NOW)
    audit.insert_events(events(["c-1", "c-2", "c-3"], per=4), seen=12)
    assert linked_by_guid() == {"c-1": (4, 0), "c-2": (4, 0), "c-3": (4, 0)}

    part = store_part(connection, ["c-1", "c-2"])  # c-3 belongs to a later part
    part.link_added_connectors()

    assert linked_by_guid() == {"c-1": (4, 4), "c-2": (4, 4), "c-3": (4, 0)}
    assert part.counts.events_relinked == 8
    # Linked once: a second call has nothing left to do.
    part.link_added_connectors()
    assert part.counts.events_relinked == 8
    # The run's final relink takes what remains, once c-3's part is stored too.
    store_part(connection, ["c-3"])
    final = Ingest(connection, now=NOW)
    final.relink()
    assert final.counts.events_relinked == 4
    assert linked_by_guid()["c-3"] == (4, 4)


def test_the_audit_ingest_learns_the_connectors_a_part_added_after_its_first_batch(
    connection: Connection,
) -> None:
    """A long first sync: the audit ingest loaded what it knew at its first batch, and
    the parts have added connectors since. It looks the unknown ones up again (at most
    every CONNECTOR_LOOKUP_SECONDS), so later events are stored linked."""
    clock = [1000.0]
    audit = Ingest(connection, now=NOW)
    audit.clock = lambda: clock[0]
    audit.insert_events(events(["c-1"], per=3), seen=3)
    store_part(connection, ["c-1"])  # committed meanwhile, without linking anything

    # Within the interval: not looked up yet (one query for the whole batch, no more).
    clock[0] += CONNECTOR_LOOKUP_SECONDS / 2
    with CaptureQueriesContext(db) as queries:
        audit.insert_events(events(["c-1"], per=3, start=3), seen=3)
    assert not [q for q in queries if "backup_connectors" in q["sql"]]
    assert linked_by_guid() == {"c-1": (6, 0)}

    clock[0] += CONNECTOR_LOOKUP_SECONDS
    audit.insert_events(events(["c-1"], per=3, start=6), seen=3)
    assert linked_by_guid() == {"c-1": (9, 3)}


def test_linking_touches_only_the_events_still_missing_those_connectors(
    connection: Connection,
) -> None:
    """The link sets the connector of this connection's events that have none and whose
    connector id is one given: never another connection's events with the same id, an
    event already linked, or an event of a connector not given."""
    other = Connection.objects.create(provider="keepit", name="Other MSP", enabled=True)
    Ingest(other, now=NOW).insert_events(events(["c-1"], per=2), seen=2)
    audit = Ingest(connection, now=NOW)
    audit.insert_events(events(["c-1", "c-2"], per=2), seen=4)
    old = store_part(connection, ["c-9"]).connectors_added["c-9"]
    BackupAuditEvent.objects.filter(connection=connection, dedup_key="c-1-0").update(
        connector_id=old
    )  # already linked (to another connector): left as it is

    part = store_part(connection, ["c-1", "c-2"])
    part.connectors_added.pop("c-2")  # a connector this link is not about
    part.link_added_connectors()

    assert part.counts.events_relinked == 1
    mine = dict(
        BackupAuditEvent.objects.filter(connection=connection).values_list(
            "dedup_key", "connector__external_id"
        )
    )
    assert mine == {"c-1-0": "c-9", "c-1-1": "c-1", "c-2-0": None, "c-2-1": None}
    assert not BackupAuditEvent.objects.filter(connection=other, connector__isnull=False)


def analyzed_rows(table: str) -> float:
    """The rows the planner believes `table` holds (-1: never analyzed). ANALYZE writes
    it in place: a rolled-back test leaves it to the next."""
    with db.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [table])
        return float(cursor.fetchone()[0])


def test_an_audit_part_that_loaded_many_events_refreshes_their_statistics(
    connection: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a first sync's bulk load the planner would see a nearly empty table: the
    audit part refreshes the statistics when it ends (not the run's finish, which waits
    for the accounts), and only after a load big enough to matter."""
    monkeypatch.setattr("backups.ingest.REFRESH_STATISTICS_AFTER", 40)
    before = analyzed_rows("backup_audit_events")  # -1, or what an earlier test left
    audit = Ingest(connection, now=NOW)
    audit.insert_events(events(["c-1"], per=30), seen=30)
    audit.audit_stored()
    assert analyzed_rows("backup_audit_events") == before  # 30 events: not worth it
    audit.insert_events(events(["c-1"], per=20, start=30), seen=20)
    audit.audit_stored()
    assert analyzed_rows("backup_audit_events") == 50
