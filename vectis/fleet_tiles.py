"""The fleet-wide tiles (connectors per status, the freshness chart, open alerts), kept
between page views until the data under them changes.

Counting them reads every live connector with its status row and the open alerts: at
80,000 connectors most of the dashboard's time (about 100 ms of 150 on a 2-core
machine), paid on every view, while the data changes only when a sync stores, an alert
pass writes or someone excludes an account — every 15 minutes, not every view.

What is kept, in Django's cache (Redis in production), for an hour at most: the counts,
the database snapshot they were counted from, and the last complete backups that can
cross an edge of the freshness chart within that hour (those a little over 24, 48, 72
and 168 hours old), so the chart is redrawn exact for any `now` in the hour.

A view uses them only if no transaction that wrote what they count has committed since
that snapshot: such a transaction leaves a mark in `fleet_writes` (vectis.models.
FleetWrite; a statement trigger in the writer's own transaction, migrations 0003-0004),
visible exactly when its writes are, and one indexed query asks for a mark the snapshot
did not see. The snapshot is taken before counting, so a write committing during the
count is one it did not see. Tiles are never kept by a transaction that has written (its
own snapshot counts its marks as seen, and its writes may still roll back), nor on a
standby (its snapshots do not list the primary's running transactions). They are kept
for one database in one server's life (its "origin"): not across a crash (an unlogged
token, emptied by crash recovery), a restore or a table rewritten (its file), nor into
another database on the same cache.

Writes that fire no trigger (`session_replication_role = replica`, triggers disabled)
are not seen: after such maintenance, call `forget_kept_tiles` (a mark of its own: it
reaches every process, whatever the cache) or wait the hour. SQLite (the demo) has no
marks: the tiles are counted on every view there."""

from __future__ import annotations

import functools
import hashlib
import logging
from array import array
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import NamedTuple

from django.contrib.postgres.aggregates import ArrayAgg
from django.core.cache import cache
from django.db import connection
from django.db.models import BigIntegerField, F, Func, Q

from alerts.selectors import connectors_with_open_alert, open_alerts
from backups.selectors import (
    FRESHNESS_EDGES,
    STATUS_ORDER,
    FleetHealth,
    fleet_health,
    freshness_chart,
    freshness_counts,
    live_connectors,
)

logger = logging.getLogger(__name__)

# How long kept tiles may be used at most.
KEEP_FOR = timedelta(hours=1)


@functools.cache  # the same for the process's life: one computation, not one per view
def _version() -> str:
    shapes = [",".join(f.name for f in fields(kind)) for kind in (FleetHealth, FleetTiles, _Kept)]
    return "|".join(
        [
            *shapes,
            ",".join(f"{label}:{upper}" for label, upper, _tone in FRESHNESS_EDGES),
            ",".join(STATUS_ORDER),
        ]
    )


@dataclass(frozen=True)
class FleetTiles:
    """The tiles of the unfiltered health pages: `health` as `fleet_health` counts it for
    a list (never-read, other and OK-with-an-open-alert counted too) and the open
    alerts."""

    health: FleetHealth
    open_alerts: int


@dataclass(frozen=True)
class _Kept:
    origin: str
    snapshot: str
    counted_at: datetime
    tiles: FleetTiles  # as counted at `counted_at`: the freshness chart is redrawn per view
    crossing: array[int]  # `_crossing`: microseconds since the epoch, sorted
    # Per bucket of the chart at `counted_at`, the connectors not in `crossing`: they stay.
    staying: list[int]


def fleet_tiles(*, now: datetime) -> FleetTiles:
    """The fleet-wide tiles at `now`: kept ones when nothing they count has changed since,
    else counted (and kept when that is safe)."""
    if connection.vendor != "postgresql":
        return _count(now)
    key = _cache_key()
    kept = _cache_get(key)
    since = kept.snapshot if isinstance(kept, _Kept) else None
    # This view's snapshot, taken before counting: a write committing during the count
    # is one it did not see, so the next view counts again.
    database = _database(since=since)
    if (
        isinstance(kept, _Kept)
        and kept.counted_at <= now < kept.counted_at + KEEP_FOR
        and database.origin is not None
        and database.origin == kept.origin
        and database.unchanged  # a mark of this very transaction is one kept did not see
    ):
        return _from_kept(kept, now)
    tiles = _count(now)
    # Not kept by a transaction that has written: its snapshots count its own marks as
    # seen, and its writes may still roll back.
    if database.origin is not None and not database.written:
        crossing = _crossing(now)
        counted = [bucket.count for bucket in tiles.health.freshness[:-1]]
        moving = freshness_counts(now=now, successes=crossing)
        kept = _Kept(
            origin=database.origin,
            snapshot=database.snapshot,
            counted_at=now,
            tiles=tiles,
            crossing=crossing,
            staying=[all_ - some for all_, some in zip(counted, moving, strict=True)],
        )
        _cache_set(key, kept)
    return tiles


def forget_kept_tiles() -> None:
    """End the kept tiles everywhere, whatever the cache (after writes that fire no
    trigger: see the module's note): a mark, as a writer's, that no kept snapshot saw."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO fleet_writes (xid, written_at, horizon) VALUES ("
            " pg_current_xact_id()::text::bigint, clock_timestamp(),"
            " pg_snapshot_xmin(pg_current_snapshot())::text::bigint)"
        )


def _count(now: datetime) -> FleetTiles:
    health = fleet_health(
        now=now, for_list=True, ok_needing_attention=Q(pk__in=connectors_with_open_alert())
    )
    return FleetTiles(health=health, open_alerts=open_alerts().count())


def _crossing(now: datetime) -> array[int]:
    """The live connectors' last complete backups that cross an edge of the freshness
    chart between `now` and `now + KEEP_FOR` (at moment t a backup at x is in the newer
    bucket of edge e while x > t - e): those in (now - e, now - e + KEEP_FOR], read
    through index connector_status_success_idx. The rest stay in their bucket; a backup
    in the future stays in the first bucket until it is a day old."""
    windows = Q()
    for _label, upper, _tone in FRESHNESS_EDGES:
        if upper is not None:
            edge = now - timedelta(hours=upper)
            windows |= Q(
                backup_status__last_success_at__gt=edge,
                backup_status__last_success_at__lte=edge + KEEP_FOR,
            )
    epoch = Func(
        F("backup_status__last_success_at"),
        template="(EXTRACT(EPOCH FROM %(expressions)s) * 1000000)::bigint",
        output_field=BigIntegerField(),
    )
    found = live_connectors().filter(windows).aggregate(at=ArrayAgg(epoch, default=[]))["at"]
    return array("q", sorted(found))


def _from_kept(kept: _Kept, now: datetime) -> FleetTiles:
    health = kept.tiles.health
    moving = freshness_counts(now=now, successes=kept.crossing)
    counts = [stay + move for stay, move in zip(kept.staying, moving, strict=True)]
    never = health.freshness[-1].count  # no success at all: the same at any `now`
    return replace(kept.tiles, health=replace(health, freshness=freshness_chart(counts, never)))


def _cache_get(key: str) -> object:
    # The cache only saves work: with it gone (Redis down), the pages count as before.
    try:
        return cache.get(key)
    except Exception as exc:  # whatever the backend raises
        logger.warning("The cache is not answering (%s): the tiles are counted each view.", exc)
        return None


def _cache_set(key: str, kept: _Kept) -> None:
    try:
        cache.set(key, kept, timeout=int(KEEP_FOR.total_seconds()))
    except Exception as exc:
        logger.warning("The cache is not answering (%s): the tiles are not kept.", exc)


def _cache_key() -> str:
    settings = connection.settings_dict
    # What the kept tiles hold and mean is in the key: a release that changes the buckets,
    # the statuses or the kept form never reads the old ones.
    where = f"{settings['HOST']}:{settings['PORT']}:{settings['NAME']}:{_version()}"
    return f"vectis:fleet-tiles:{hashlib.sha256(where.encode()).hexdigest()[:32]}"


class _Database(NamedTuple):
    origin: str | None  # None: nothing may be kept (a standby, or no token yet)
    unchanged: bool
    snapshot: str
    written: bool


def _database(*, since: str | None) -> _Database:
    """In one statement (one snapshot): this database's origin — its oid, the server's
    start, the token crash recovery empties (none on a standby: nothing is kept there,
    its snapshots do not list the primary's running transactions), the files of the
    tables the tiles count; whether no transaction that wrote what the tiles count has
    committed since snapshot `since` (a mark it did not see: index fleet_write_xid_idx
    reads only the marks of transactions not over before it); the snapshot now; and
    whether this transaction has written anything."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT CASE WHEN token <> '' THEN concat_ws(' ',"
            " (SELECT oid FROM pg_database WHERE datname = current_database()),"
            " pg_postmaster_start_time(), token,"
            # A table truncated, rewritten or restored gets a new file (its marks too).
            " pg_relation_filenode('backup_connectors'),"
            " pg_relation_filenode('backup_connector_status'),"
            " pg_relation_filenode('integration_account_links'),"
            " pg_relation_filenode('alerts'), pg_relation_filenode('fleet_writes')) END,"
            " token = '',"
            " NOT EXISTS (SELECT 1 FROM fleet_writes"
            " WHERE xid >= pg_snapshot_xmin(%s::pg_snapshot)::text::bigint"
            " AND NOT pg_visible_in_snapshot(xid::text::xid8, %s::pg_snapshot)),"
            " pg_current_snapshot()::text, pg_current_xact_id_if_assigned() IS NOT NULL"
            " FROM (SELECT fleet_origin_token() AS token) AS origin",
            [since, since],
        )
        origin, no_token, unchanged, snapshot, written = cursor.fetchone()
        if no_token and not connection.in_atomic_block:
            # The first view after a migration or a crash makes the token for the next
            # ones (never inside a transaction: it would make that transaction a writer).
            cursor.execute("INSERT INTO fleet_origin DEFAULT VALUES ON CONFLICT DO NOTHING")
        return _Database(origin, bool(unchanged), str(snapshot), bool(written))
