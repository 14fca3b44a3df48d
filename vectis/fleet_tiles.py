"""The fleet-wide tiles (connectors per status, the freshness chart, open alerts), kept
between page views until the data under them changes.

Counting them reads every live connector with its status row and the open alerts: at
80,000 connectors most of the dashboard's time (about 100 ms of 150 on a 2-core
machine), paid on every view, while the data changes only when a sync stores, an alert
pass writes or someone excludes an account — every 15 minutes, not every view.

What is kept, in Django's cache (Redis in production), for an hour at most: the counts,
the database snapshot they were counted in, and the last complete backups that can
cross an edge of the freshness chart within that hour (those a little over 24, 48, 72
and 168 hours old), so the chart is redrawn exact for any `now` in the hour.
A view uses them only if no transaction that wrote connectors, status rows, account
links or alerts has committed since that snapshot: such a transaction leaves a mark in
`fleet_writes` (vectis.models.FleetWrite, a trigger in its own transaction), visible
exactly when its writes are, and one indexed query asks for a mark the snapshot did not
see. Counts are kept only when no mark appeared while they were counted, and never by a
transaction that has written itself (its writes may still roll back). Nothing here can
show a number the database no longer holds; at worst the tiles are counted again.

SQLite (the demo) has no marks: the tiles are counted on every view there."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import NamedTuple

from django.contrib.postgres.aggregates import ArrayAgg
from django.core.cache import cache
from django.db import connection
from django.db.models import BigIntegerField, F, Func, Q

from alerts.selectors import connectors_with_open_alert, open_alerts
from backups.selectors import (
    FRESHNESS_EDGES,
    FleetHealth,
    fleet_health,
    freshness_chart,
    freshness_counts,
    live_connectors,
)

# How long kept tiles may be used at most (the marks are pruned a day after they were
# written, `vectis.retention`: no transaction of Vectis runs for hours).
KEEP_FOR = timedelta(hours=1)


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
    kept = cache.get(key)
    if isinstance(kept, _Kept) and kept.counted_at <= now < kept.counted_at + KEEP_FOR:
        database = _database(since=kept.snapshot)
        # A mark of this very transaction is one the kept snapshot did not see either.
        if database.unchanged and database.origin == kept.origin:
            return _from_kept(kept, now)
    # The snapshot before counting: a write that commits while the tiles are counted is
    # one it did not see, so the next view counts again.
    database = _database(since=None)
    tiles = _count(now)
    # Not kept by a transaction that has written: its snapshots count its own marks as
    # seen, and its writes may still roll back.
    if not database.written:
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
        cache.set(key, kept, timeout=int(KEEP_FOR.total_seconds()))
    return tiles


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


def _cache_key() -> str:
    settings = connection.settings_dict
    return f"vectis:fleet-tiles:{settings['HOST']}:{settings['PORT']}:{settings['NAME']}"


class _Database(NamedTuple):
    origin: str
    unchanged: bool
    snapshot: str
    written: bool


def _database(*, since: str | None) -> _Database:
    """This database's origin (its oid in this server's life: kept tiles of another
    database on the same cache, or of a server restored elsewhere, are never taken for
    this one's); whether no transaction that wrote what the tiles count has committed
    since snapshot `since` (a mark it did not see: index fleet_write_xid_idx reads only
    the marks of transactions not over before it); the snapshot now; and whether this
    transaction has written anything."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT oid FROM pg_database WHERE datname = current_database())::text"
            " || '@' || pg_postmaster_start_time()::text,"
            " NOT EXISTS (SELECT 1 FROM fleet_writes"
            " WHERE xid >= pg_snapshot_xmin(%s::pg_snapshot)::text::bigint"
            " AND NOT pg_visible_in_snapshot(xid::text::xid8, %s::pg_snapshot)),"
            " pg_current_snapshot()::text, pg_current_xact_id_if_assigned() IS NOT NULL",
            [since, since],
        )
        origin, unchanged, snapshot, written = cursor.fetchone()
        return _Database(str(origin), bool(unchanged), str(snapshot), bool(written))
