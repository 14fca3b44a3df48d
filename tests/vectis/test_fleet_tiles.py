"""The fleet-wide tiles kept between page views (vectis.fleet_tiles): they must always be
what counting them again would give — after every kind of write, at any later `now`,
when a write commits while they are being counted, and inside a transaction that wrote
and then rolled back. Real commits (transaction=True): the marks are what commits."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any

import psycopg2  # type: ignore[import-untyped]
import pytest
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Q
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alerts.models import Alert
from alerts.selectors import connectors_with_open_alert, open_alerts
from backups.models import AccountLink, BackupConnector, BackupConnectorStatus, BackupStatus
from backups.selectors import fleet_health
from tests.conftest import database_url
from tests.factories import AccountLinkFactory, ConnectorFactory
from vectis import fleet_tiles
from vectis.fleet_tiles import FleetTiles
from vectis.models import FleetWrite

pytestmark = pytest.mark.django_db(transaction=True)
HOUR = timedelta(hours=1)


@pytest.fixture(autouse=True)
def no_kept_tiles() -> Iterator[None]:
    cache.clear()
    with connection.cursor() as cursor:  # the token the first view would make
        cursor.execute("INSERT INTO fleet_origin DEFAULT VALUES ON CONFLICT DO NOTHING")
    yield
    cache.clear()


def counted(now: datetime) -> FleetTiles:
    """The truth: the tiles counted now, as the pages counted them before any keeping."""
    health = fleet_health(
        now=now, for_list=True, ok_needing_attention=Q(pk__in=connectors_with_open_alert())
    )
    return FleetTiles(health=health, open_alerts=open_alerts().count())


def tiles_and_whether_counted(now: datetime) -> tuple[FleetTiles, bool]:
    with CaptureQueriesContext(connection) as captured:
        tiles = fleet_tiles.fleet_tiles(now=now)
    return tiles, any('"s_failed"' in q["sql"] for q in captured.captured_queries)


class RolledBack(Exception):
    pass


def rolled_back(work: Callable[[], Any]) -> None:
    """`work` in a transaction (a savepoint inside one) that is then rolled back."""
    with suppress(RolledBack), transaction.atomic():
        work()
        raise RolledBack


def commit_another_transaction() -> None:
    other = psycopg2.connect(database_url())
    with other, other.cursor() as cursor:
        cursor.execute("SELECT pg_current_xact_id()")
    other.close()


def stale_alert(connector: BackupConnector, now: datetime) -> Alert:
    return Alert.objects.create(
        key=f"1:{connector.pk}",
        kind=Alert.Kind.BACKUP_STALE,
        connector=connector,
        summary=connector.name,
        opened_at=now,
        last_seen_at=now,
    )


def test_kept_tiles_are_what_counting_gives_after_every_kind_of_write() -> None:
    now = timezone.now()
    link = AccountLinkFactory.create()
    ok = ConnectorFactory.create(name="OK", backup_status__last_success_at=now - 2 * HOUR)
    failing = ConnectorFactory.create(
        name="Failing", backup_status__status=BackupStatus.FAILED, account_link=link
    )
    old = ConnectorFactory.create(name="Old", backup_status__last_success_at=now - 50 * HOUR)
    spare = ConnectorFactory.create(name="Spare", backup_status__status=BackupStatus.ONBOARDING)
    never_read = ConnectorFactory.create(name="Never read", backup_status=None)
    first, was_counted = tiles_and_whether_counted(now)
    assert was_counted
    assert first == counted(now)
    with CaptureQueriesContext(connection) as captured:
        again = fleet_tiles.fleet_tiles(now=now)
    assert len(captured.captured_queries) == 1  # kept: nothing changed
    assert again == first

    writes: list[tuple[str, Callable[[], Any]]] = [
        (
            "a status changes",
            lambda: BackupConnectorStatus.objects.filter(connector=ok).update(
                status=BackupStatus.WARNING
            ),
        ),
        (
            "a last success moves",
            lambda: BackupConnectorStatus.objects.filter(connector=old).update(
                last_success_at=now - HOUR
            ),
        ),
        ("an alert opens on an OK connector", lambda: stale_alert(old, now)),
        (
            "the open alert moves to a failing connector",
            lambda: Alert.objects.update(connector=failing),
        ),
        ("the alert is resolved", lambda: Alert.objects.update(resolved_at=now)),
        (
            "an account is excluded",
            lambda: AccountLink.objects.filter(pk=link.pk).update(state=AccountLink.State.EXCLUDED),
        ),
        (
            "a connector moves to an excluded account",
            lambda: BackupConnector.objects.filter(pk=spare.pk).update(account_link=link),
        ),
        (
            "a status row moves to another connector",
            lambda: BackupConnectorStatus.objects.filter(connector=failing).update(
                connector=never_read
            ),
        ),
        (
            "a connector is removed",
            lambda: BackupConnector.objects.filter(pk=ok.pk).update(removed_at=now),
        ),
        ("a connector arrives", lambda: ConnectorFactory.create(name="New", backup_status=None)),
        (
            "a status row goes",
            lambda: BackupConnectorStatus.objects.filter(connector=old).delete(),
        ),
        ("a connector is deleted", lambda: BackupConnector.objects.filter(pk=old.pk).delete()),
    ]
    before = first
    for what, write in writes:
        write()
        tiles, was_counted = tiles_and_whether_counted(now)
        assert was_counted, what
        assert tiles == counted(now), what
        assert tiles != before, what  # each write changes what the tiles show
        kept, was_counted = tiles_and_whether_counted(now)
        assert not was_counted, what
        assert kept == tiles, what
        before = tiles


def test_the_kept_freshness_chart_is_exact_at_any_later_moment() -> None:
    """The chart's buckets are counted from `now`; kept, they are redrawn for each view
    from the backups that cross an edge within the hour — edge for edge what counting
    at that moment gives."""
    start = timezone.now()
    edges_meet = start + timedelta(minutes=30)  # each bucket's edge on a backup
    microsecond = timedelta(microseconds=1)
    ages = [-HOUR, 0 * HOUR, HOUR, 24 * HOUR, 48 * HOUR, 72 * HOUR, 168 * HOUR, 200 * HOUR]
    for n, age in enumerate(ages):
        for nudge in (-microsecond, 0 * microsecond, microsecond):
            ConnectorFactory.create(
                name=f"C{n}", backup_status__last_success_at=edges_meet - age + nudge
            )
    # Backups that cross an edge at the very end of the hour the tiles are kept.
    last = start + HOUR - microsecond
    for n, age in enumerate([24 * HOUR, 48 * HOUR, 72 * HOUR, 168 * HOUR]):
        for nudge in (-microsecond, 0 * microsecond):
            ConnectorFactory.create(
                name=f"Late {n}", backup_status__last_success_at=last - age + nudge
            )
    ConnectorFactory.create(name="Onboarding", backup_status__last_success_at=None)
    tiles_and_whether_counted(start)
    for moment in [
        start,
        edges_meet - microsecond,
        edges_meet,
        edges_meet + microsecond,
        last - microsecond,
        last,
    ]:
        tiles, was_counted = tiles_and_whether_counted(moment)
        assert not was_counted
        assert tiles.health.freshness == counted(moment).health.freshness, moment
    # Kept for an hour from when they were counted, not before it: counted again.
    for moment in (start + HOUR, start - microsecond):
        tiles, was_counted = tiles_and_whether_counted(moment)
        assert was_counted, moment
        assert tiles == counted(moment)
    # When the edges meet: "< 24 h" holds the future, the newest and what is just under
    # 24 h old; a backup exactly on an edge goes to the older bucket.
    at_edges = [bucket.count for bucket in counted(edges_meet).health.freshness]
    assert at_edges == [12, 5, 5, 5, 5, 1]


def test_a_write_committed_while_the_tiles_are_counted_makes_the_next_view_count_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another writer commits while the tiles are counted: what was counted may miss it,
    so the next view counts again (its mark is one the tiles' snapshot did not see)."""
    now = timezone.now()
    connector = ConnectorFactory.create(name="Soon failing")
    count = fleet_tiles._count

    def count_while_another_writer_commits(moment: datetime) -> Any:
        result = count(moment)
        other = psycopg2.connect(database_url())
        with other, other.cursor() as cursor:
            cursor.execute(
                "UPDATE backup_connector_status SET status = 'failed' WHERE connector_id = %s",
                [connector.pk],
            )
        other.close()
        return result

    monkeypatch.setattr(fleet_tiles, "_count", count_while_another_writer_commits)
    shown, _ = tiles_and_whether_counted(now)
    assert shown.health.statuses[BackupStatus.OK] == 1
    monkeypatch.setattr(fleet_tiles, "_count", count)
    tiles, was_counted = tiles_and_whether_counted(now)
    assert was_counted
    assert tiles.health.statuses[BackupStatus.FAILED] == 1
    assert tiles == counted(now)


def test_a_transaction_that_wrote_and_rolled_back_leaves_no_tiles_behind() -> None:
    now = timezone.now()
    connector = ConnectorFactory.create(name="Fine")
    before, _ = tiles_and_whether_counted(now)

    def write_and_look() -> None:
        BackupConnectorStatus.objects.filter(connector=connector).update(status=BackupStatus.FAILED)
        # A later transaction ends first: this one's own id falls inside its snapshots'
        # range, where PostgreSQL counts it as seen (a snapshot never lists its owner).
        commit_another_transaction()
        inside, was_counted = tiles_and_whether_counted(now)
        assert was_counted  # its own write: the kept tiles do not have it
        assert inside.health.statuses[BackupStatus.FAILED] == 1

    rolled_back(write_and_look)
    after, _ = tiles_and_whether_counted(now)
    assert after == before == counted(now)
    assert after.health.statuses[BackupStatus.FAILED] == 0


def test_one_mark_per_writing_transaction_and_none_for_one_rolled_back() -> None:
    FleetWrite.objects.all().delete()
    with transaction.atomic():
        ConnectorFactory.create(name="A")  # a connector and its status row
        ConnectorFactory.create(name="B")
    assert FleetWrite.objects.count() == 1
    rolled_back(lambda: ConnectorFactory.create(name="C"))
    assert FleetWrite.objects.count() == 1
    with transaction.atomic():
        rolled_back(lambda: ConnectorFactory.create(name="D"))  # a savepoint
        ConnectorFactory.create(name="E")  # marked again: the savepoint's mark went
    assert FleetWrite.objects.count() == 2


def test_a_writer_running_while_the_tiles_are_counted_is_seen_when_it_commits() -> None:
    """A transaction that began, and wrote, before the tiles' snapshot and commits after
    it: its id is below the snapshot's end, listed as running."""
    now = timezone.now()
    connector = ConnectorFactory.create(name="Soon failing")
    tiles_and_whether_counted(now)  # kept
    writer = psycopg2.connect(database_url())
    with writer.cursor() as cursor:
        cursor.execute(
            "UPDATE backup_connector_status SET status = 'failed' WHERE connector_id = %s",
            [connector.pk],
        )
    commit_another_transaction()  # a later transaction ends first
    cache.clear()
    before_commit, was_counted = tiles_and_whether_counted(now)
    assert was_counted
    assert before_commit.health.statuses[BackupStatus.FAILED] == 0
    assert tiles_and_whether_counted(now) == (before_commit, False)  # kept
    writer.commit()
    writer.close()
    tiles, was_counted = tiles_and_whether_counted(now)
    assert was_counted
    assert tiles.health.statuses[BackupStatus.FAILED] == 1


def test_writes_to_what_the_tiles_do_not_count_keep_them() -> None:
    """A sync refreshing `checked_at`, an alert acknowledged or reworded: nothing the
    tiles count, no counting again (every pass and sync would otherwise end them)."""
    now = timezone.now()
    connector = ConnectorFactory.create(name="Alerted")
    alert = stale_alert(connector, now)
    first, _ = tiles_and_whether_counted(now)
    BackupConnectorStatus.objects.filter(connector=connector).update(checked_at=now)
    Alert.objects.filter(pk=alert.pk).update(summary="Reworded", last_seen_at=now)
    BackupConnector.objects.filter(pk=connector.pk).update(name="Renamed")
    assert tiles_and_whether_counted(now) == (first, False)
    Alert.objects.filter(pk=alert.pk).update(resolved_at=now)
    tiles, was_counted = tiles_and_whether_counted(now)
    assert was_counted
    assert tiles.open_alerts == 0


def test_tiles_kept_before_a_crash_or_a_truncation_are_not_used_after_it() -> None:
    """Crash recovery empties the unlogged token (a crash may undo writes the kept tiles
    saw, and give their transaction ids out again); a table truncated or rewritten gets a
    new file, the marks' table included."""
    now = timezone.now()
    ConnectorFactory.create(name="Fine")
    tiles_and_whether_counted(now)
    assert tiles_and_whether_counted(now)[1] is False
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE fleet_origin")  # what crash recovery does to it
    assert tiles_and_whether_counted(now)[1] is True  # and makes a new token
    assert tiles_and_whether_counted(now)[1] is True  # counted: now kept again
    assert tiles_and_whether_counted(now)[1] is False
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE fleet_writes")  # the marks gone: nothing can be trusted
    assert tiles_and_whether_counted(now)[1] is True


def test_forgetting_the_kept_tiles_reaches_every_process() -> None:
    """After writes no trigger saw (maintenance with triggers off): a mark of its own,
    so every process's kept tiles end, whatever cache they are in."""
    now = timezone.now()
    connector = ConnectorFactory.create(name="Fine")
    tiles_and_whether_counted(now)
    with connection.cursor() as cursor:  # a write no trigger sees
        cursor.execute("SET session_replication_role = replica")
        cursor.execute(
            "UPDATE backup_connector_status SET status = 'failed' WHERE connector_id = %s",
            [connector.pk],
        )
        cursor.execute("SET session_replication_role = DEFAULT")
    assert tiles_and_whether_counted(now)[1] is False  # not seen: the module's caveat
    fleet_tiles.forget_kept_tiles()
    tiles, was_counted = tiles_and_whether_counted(now)
    assert was_counted
    assert tiles.health.statuses[BackupStatus.FAILED] == 1


def test_beat_counts_the_tiles_ahead_of_the_views_once_they_changed() -> None:
    from django.conf import settings

    from vectis.tasks import keep_fleet_tiles

    entry = settings.CELERY_BEAT_SCHEDULE["keep-fleet-tiles"]
    assert entry["task"] == "vectis.tasks.keep_fleet_tiles"
    assert entry["schedule"] == timedelta(minutes=1)
    connector = ConnectorFactory.create(name="Soon failing")
    tiles_and_whether_counted(timezone.now())
    BackupConnectorStatus.objects.filter(connector=connector).update(status=BackupStatus.FAILED)
    assert keep_fleet_tiles.apply().get() == 1
    tiles, was_counted = tiles_and_whether_counted(timezone.now())
    assert not was_counted  # the beat counted them
    assert tiles.health.statuses[BackupStatus.FAILED] == 1


def test_with_the_cache_gone_the_tiles_are_counted_and_the_page_answers(
    settings: Any, admin_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The cache only saves work: Redis down must not take the dashboard with it."""
    ConnectorFactory.create(name="Failing", backup_status__status=BackupStatus.FAILED)
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
        }
    }
    tiles, was_counted = tiles_and_whether_counted(timezone.now())
    assert was_counted
    assert tiles == counted(timezone.now())
    assert "The cache is not answering" in caplog.text
    page = admin_client.get("/admin/backups/")
    assert page.status_code == 200
    assert "Failing" in page.content.decode()


def test_the_dashboard_shows_kept_tiles_fleet_wide_and_counts_a_filtered_view_itself(
    admin_client: Any,
) -> None:
    """The page's wiring: fleet-wide, the second view takes the kept tiles and a counted
    write shows at once; filtered, the tiles count what the filters select, never the
    kept fleet-wide ones."""

    def failed_tile(url: str) -> tuple[int, bool]:
        with CaptureQueriesContext(connection) as captured:
            html = admin_client.get(url).content.decode()
        number = int(html.split('data-testid="count-failed">', 1)[1].split("<", 1)[0])
        return number, any('"s_failed"' in q["sql"] for q in captured.captured_queries)

    ConnectorFactory.create(name="M365 failing", backup_status__status=BackupStatus.FAILED)
    okta = ConnectorFactory.create(name="Okta", kind="okta")
    assert failed_tile("/admin/backups/") == (1, True)
    assert failed_tile("/admin/backups/") == (1, False)  # kept
    assert failed_tile("/admin/backups/?kind=okta") == (0, True)  # its own count
    BackupConnectorStatus.objects.filter(connector=okta).update(status=BackupStatus.FAILED)
    assert failed_tile("/admin/backups/") == (2, True)
    assert failed_tile("/admin/backups/?kind=okta") == (1, True)
