"""integrations/sql.py: the raw SQL that must stay raw is built from model metadata, so a
field with a default never breaks it and a mistake fails here, not in the database."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from backups.models import AccountLink, AuditCategory, BackupAuditEvent
from integrations import sql
from integrations.models import Connection
from integrations.sql import MissingValue, column, insert_rows, update_returning
from tests.conftest import manage, subprocess_env

WHEN = datetime(2026, 11, 26, 11, 0, tzinfo=UTC)


@pytest.fixture
def connection(db: None) -> Connection:
    return Connection.objects.create(provider="keepit", name="SQL helper")


def account(connection: Connection) -> AccountLink:
    return AccountLink.objects.create(
        connection=connection,
        external_id="acct-1",
        company_name="A",
        first_seen_at=WHEN,
        last_seen_at=WHEN,
    )


def event_row(connection: Connection, key: str, **values: object) -> dict[str, object]:
    return {"connection_id": connection.pk, "occurred_at": WHEN, "dedup_key": key, **values}


def test_columns_a_row_does_not_give_take_the_fields_defaults(connection: Connection) -> None:
    ids = insert_rows(BackupAuditEvent, [event_row(connection, "a")], conflict=None, returning="id")
    event = BackupAuditEvent.objects.get(pk=ids[0])
    # Python defaults, a callable default, NULL for nullable fields, now for auto_now_add.
    assert event.category == AuditCategory.OTHER
    assert event.metadata == {}
    assert event.message == ""
    assert event.succeeded is None
    assert event.customer_id is None
    assert event.is_own_read is False
    assert event.created_at is not None


def test_rows_already_stored_are_skipped_and_only_new_ones_come_back(
    connection: Connection,
) -> None:
    first = insert_rows(
        BackupAuditEvent,
        [event_row(connection, "a"), event_row(connection, "b")],
        conflict="(connection_id, dedup_key)",
        returning="dedup_key",
    )
    again = insert_rows(
        BackupAuditEvent,
        [event_row(connection, "b", message="changed"), event_row(connection, "c")],
        conflict="(connection_id, dedup_key)",
        returning="dedup_key",
    )
    assert sorted(first) == ["a", "b"]
    assert again == ["c"]
    assert BackupAuditEvent.objects.get(dedup_key="b").message == ""  # DO NOTHING


def test_a_batch_larger_than_one_statement_allows_is_cut_not_refused(
    connection: Connection,
) -> None:
    rows = [event_row(connection, f"k{i}") for i in range(3_000)]  # > 30,000 parameters
    assert len(insert_rows(BackupAuditEvent, rows, conflict=None)) == 3_000


def test_a_field_without_a_default_or_an_unknown_key_fails_loudly(
    connection: Connection,
) -> None:
    with pytest.raises(MissingValue, match=r"BackupAuditEvent\.occurred_at"):
        insert_rows(
            BackupAuditEvent,
            [{"connection_id": connection.pk, "dedup_key": "x"}],
            conflict=None,
        )
    with pytest.raises(MissingValue, match="no field occured_at"):
        insert_rows(BackupAuditEvent, [event_row(connection, "y", occured_at=WHEN)], conflict=None)
    assert not BackupAuditEvent.objects.exists()


def test_a_claim_changes_and_returns_only_the_rows_that_still_matched(
    connection: Connection,
) -> None:
    insert_rows(
        BackupAuditEvent,
        [event_row(connection, "a"), event_row(connection, "b", category="recovery")],
        conflict=None,
    )
    where = f"{column(BackupAuditEvent, 'category')} = %s"
    claimed = update_returning(
        BackupAuditEvent,
        {"message": "claimed"},
        where=where,
        params=["recovery"],
        returning="dedup_key",
    )
    assert claimed == ["b"]
    assert (
        update_returning(BackupAuditEvent, {"message": "x"}, where=where, params=["security"]) == []
    )
    assert BackupAuditEvent.objects.get(dedup_key="b").message == "claimed"
    assert BackupAuditEvent.objects.get(dedup_key="a").message == ""


# --- COPY ---------------------------------------------------------------------------------


def test_big_batches_go_by_copy_and_store_exactly_what_values_would(
    connection: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above COPY_MIN_ROWS rows PostgreSQL gets them by COPY: awkward text (tabs,
    newlines, backslashes, quotes, "\\N", non-ASCII), JSON, NULL versus "" and booleans
    arrive as they were, duplicates are skipped and only new keys come back."""
    monkeypatch.setattr(sql, "COPY_MIN_ROWS", 3)
    copied: list[int] = []
    real_copy = sql.copy_rows

    def counting_copy(*args: object, **kwargs: object) -> list[object]:
        copied.append(1)
        return real_copy(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sql, "copy_rows", counting_copy)
    awkward = 'tab\there\nnew line \\ back\\slash \\N "quoted" Søren Ærø ApS €'
    rows = [
        event_row(
            connection,
            "a",
            message=awkward,
            metadata={"key": "va\tl\\ue", "quote": '"'},
            succeeded=True,
            allowed=False,
        ),
        event_row(connection, "b", message="", actor="", succeeded=None),
        event_row(connection, "c", category="recovery"),
    ]
    assert sorted(
        insert_rows(
            BackupAuditEvent, rows, conflict="(connection_id, dedup_key)", returning="dedup_key"
        )
    ) == ["a", "b", "c"]
    assert copied == [1]
    a = BackupAuditEvent.objects.get(dedup_key="a")
    assert a.message == awkward
    assert a.metadata == {"key": "va\tl\\ue", "quote": '"'}
    assert (a.succeeded, a.allowed, a.occurred_at) == (True, False, WHEN)
    b = BackupAuditEvent.objects.get(dedup_key="b")
    assert (b.message, b.actor, b.succeeded) == ("", "", None)
    # Again, with one new row and a duplicate inside the batch: only "d" is new.
    again = insert_rows(
        BackupAuditEvent,
        [event_row(connection, "a"), event_row(connection, "d"), event_row(connection, "d")],
        conflict="(connection_id, dedup_key)",
        returning="dedup_key",
    )
    assert again == ["d"]
    assert BackupAuditEvent.objects.count() == 4
    assert len(copied) == 2


def test_copy_inside_an_open_transaction_keeps_earlier_batches(connection: Connection) -> None:
    from django.db import transaction

    with transaction.atomic():
        first = sql.copy_rows(
            BackupAuditEvent, [event_row(connection, f"x{i}") for i in range(5)], conflict=None
        )
        second = sql.copy_rows(
            BackupAuditEvent, [event_row(connection, f"y{i}") for i in range(7)], conflict=None
        )
    assert (len(first), len(second)) == (5, 7)
    assert BackupAuditEvent.objects.count() == 12


def test_update_rows_writes_what_bulk_update_would_and_nothing_else(
    connection: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sync's bulk updates: text, NULL, times, JSON, booleans and foreign keys of many
    rows (across statements), only the fields named; a value too long for its column is
    refused, not cut."""
    from django.db import DataError, transaction

    from customers.models import Customer

    ids = insert_rows(
        BackupAuditEvent,
        [event_row(connection, f"k{i}", message="before", actor="x") for i in range(7)],
        conflict=None,
    )
    events = list(BackupAuditEvent.objects.filter(pk__in=ids).order_by("pk"))
    for i, event in enumerate(events):
        event.message = f'after {i} \u2014 it\'s "quoted"'
        event.succeeded = i % 2 == 0
        event.metadata = {"i": i, "nested": [1, None]}
        event.occurred_at = datetime(2026, 12, 1, i, 30, tzinfo=UTC)
        event.actor = "not written"  # not among the fields named
    monkeypatch.setattr(sql, "MAX_PARAMETERS", 10)  # 2 rows per statement: 4 statements
    assert (
        sql.update_rows(
            BackupAuditEvent, events, ["message", "succeeded", "metadata", "occurred_at"]
        )
        == 7
    )
    stored = list(BackupAuditEvent.objects.filter(pk__in=ids).order_by("pk"))
    for i, event in enumerate(stored):
        assert event.message == f'after {i} \u2014 it\'s "quoted"'
        assert event.succeeded is (i % 2 == 0)
        assert event.metadata == {"i": i, "nested": [1, None]}
        assert event.occurred_at == datetime(2026, 12, 1, i, 30, tzinfo=UTC)
        assert event.actor == "x"
    # NULL and a foreign key.
    link = account(connection)
    customer = Customer.objects.create(name="Contoso", normalized_name="contoso")
    stored[0].succeeded = None
    stored[0].customer_id = customer.pk
    assert sql.update_rows(BackupAuditEvent, [stored[0]], ["succeeded", "customer"]) == 1
    assert BackupAuditEvent.objects.get(pk=stored[0].pk).succeeded is None
    assert BackupAuditEvent.objects.get(pk=stored[0].pk).customer_id == customer.pk
    link.company_name = "x" * 300  # the column holds 255
    with pytest.raises(DataError), transaction.atomic():
        sql.update_rows(AccountLink, [link], ["company_name"])
    assert AccountLink.objects.get(pk=link.pk).company_name == "A"
    assert sql.update_rows(AccountLink, [], ["company_name"]) == 0


@pytest.mark.django_db(transaction=True)
def test_update_rows_writes_all_or_nothing_outside_a_transaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Called with no transaction open (autocommit, as the sync's storing thread may be):
    the 4th of 4 statements refuses a value, and the first three statements' rows keep
    what they had."""
    from django.db import DataError

    connection = Connection.objects.create(provider="keepit", name="SQL helper")
    ids = insert_rows(
        BackupAuditEvent, [event_row(connection, f"k{i}") for i in range(7)], conflict=None
    )
    events = list(BackupAuditEvent.objects.filter(pk__in=ids).order_by("pk"))
    for event in events:
        event.message = "all or nothing"
    events[-1].dedup_key = "k" * 100  # the column holds 64
    monkeypatch.setattr(sql, "MAX_PARAMETERS", 6)  # 2 rows per statement: 4 statements
    with pytest.raises(DataError):
        sql.update_rows(BackupAuditEvent, events, ["message", "dedup_key"])
    assert not BackupAuditEvent.objects.filter(message="all or nothing").exists()


def test_update_rows_on_the_syncs_own_tables(connection: Connection) -> None:
    """A status row keyed by its connector (a one-to-one primary key), a seat's `limit`
    (a reserved word) and `usage`; an unsaved row is refused before anything is written."""
    from backups.models import AccountSeat, BackupConnector, BackupConnectorStatus

    link = account(connection)
    connectors = [
        BackupConnector.objects.create(
            connection=connection,
            account_link=link,
            external_id=f"c{i}",
            name=f"Mail {i}",
            first_seen_at=WHEN,
            last_seen_at=WHEN,
        )
        for i in range(3)
    ]
    statuses = [
        BackupConnectorStatus.objects.create(connector=c, status="ok", checked_at=WHEN)
        for c in connectors
    ]
    seat = AccountSeat.objects.create(
        account_link=link, resource="seats", label="Seats", usage=1, limit=10, checked_at=WHEN
    )
    for status in statuses[:2]:
        status.status, status.reason, status.last_success_at = "failed", "AUTH", None
    assert (
        sql.update_rows(
            BackupConnectorStatus, statuses[:2], ["status", "reason", "last_success_at"]
        )
        == 2
    )
    assert sorted(BackupConnectorStatus.objects.values_list("status", "reason")) == [
        ("failed", "AUTH"),
        ("failed", "AUTH"),
        ("ok", ""),
    ]
    seat.usage, seat.limit, seat.violated = 12, None, True
    assert sql.update_rows(AccountSeat, [seat], ["usage", "limit", "violated"]) == 1
    assert AccountSeat.objects.values_list("usage", "limit", "violated").get() == (12, None, True)
    seat.usage = 99
    with pytest.raises(ValueError, match="no primary key"):
        sql.update_rows(AccountSeat, [seat, AccountSeat(account_link=link)], ["usage"])
    assert AccountSeat.objects.get().usage == 12


def test_update_claimed_and_update_rows_over_several_statements(
    connection: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seven rows, three statements (the parameter limit made small): each row is claimed
    on its own old value, whichever statement carries it — a row another writer changed
    meanwhile (here every third) keeps what it has — and a plain update counts the rows
    of every statement."""
    ids = insert_rows(
        BackupAuditEvent, [event_row(connection, f"c{i}") for i in range(7)], conflict=None
    )
    events = list(BackupAuditEvent.objects.filter(pk__in=ids).order_by("pk"))
    for index, event in enumerate(events):
        event.message = f"read {index}"
    sql.update_rows(BackupAuditEvent, events, ["message"])
    # What the claimer read: right for most rows, stale for every third.
    was = [f"read {i}" if i % 3 else f"stale {i}" for i in range(7)]
    for event in events:
        event.area = "claimed"
    monkeypatch.setattr(sql, "MAX_PARAMETERS", 9)  # 3 values a row: 3 rows a statement
    written = sql.update_claimed(BackupAuditEvent, events, ["area"], claim="message", was=was)
    expected = {event.pk for index, event in enumerate(events) if index % 3}
    assert written == expected
    assert set(BackupAuditEvent.objects.filter(area="claimed").values_list("pk", flat=True)) == (
        expected
    )
    for event in events:
        event.message = "again"
    assert sql.update_rows(BackupAuditEvent, events, ["message"]) == 7


SQLITE_CLAIM = """
from django.utils import timezone
from alerts.models import Alert
from integrations import sql

now = timezone.now()
alerts = [
    Alert.objects.create(key=f"k{n}", kind="token_expiry", stage="30", summary=f"old {n}",
                         opened_at=now, last_seen_at=now)
    for n in range(4)
]
Alert.objects.filter(key="k1").update(stage="7")  # another evaluation moved it meanwhile
Alert.objects.filter(key="k2").update(resolved_at=now)  # resolved meanwhile
for alert in alerts:
    alert.stage, alert.summary = "1", "new"
written = sql.update_claimed(Alert, alerts, ["stage", "summary"], claim="stage",
                             was=["30"] * 4, still_null=["resolved_at"])
print(sorted(Alert.objects.get(pk=pk).key for pk in written))
print(sorted(Alert.objects.values_list("key", "stage", "summary")))
for alert in alerts:
    alert.summary = "counted"
print(sql.update_rows(Alert, alerts, ["summary"]))
"""


def test_update_claimed_and_update_rows_on_sqlite_as_the_demo_runs_them(tmp_path: Path) -> None:
    """`make demo` runs on SQLite, where update_claimed is one conditional UPDATE per row:
    a row whose claimed value another writer changed, or that was resolved meanwhile,
    keeps what it has; update_rows counts what it wrote. (A child process: the suite's
    database is PostgreSQL.)"""
    env = subprocess_env(DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}")
    manage("migrate", "-v", "0", env=env)
    out = manage("shell", "-v", "0", "-c", SQLITE_CLAIM, env=env).stdout.splitlines()
    assert out == [
        "['k0', 'k3']",
        "[('k0', '1', 'new'), ('k1', '7', 'old 1'), ('k2', '30', 'old 2'), ('k3', '1', 'new')]",
        "4",
    ]
