"""The backup health dashboard (Admin → Backups, and the admin home's first panel):
freshness per connection, status tiles and the freshness chart (fleet-wide, or for what
the filters select — they say which), and the list of what needs attention."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.contrib.admin import AdminSite
from django.core.paginator import Page, Paginator
from django.db.models import DateTimeField, F, Q, QuerySet, Value
from django.http import HttpRequest, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.utils import timezone

from alerts.maintenance import connectors_in_maintenance
from alerts.selectors import (
    connector_has_open_alert,
    connectors_with_open_alert,
    disabled_channels,
    failed_deliveries,
    open_alert_for_connector,
    open_alerts,
)
from backups.jobs import SUCCESS_RATE_DAYS, success_rate_annotations
from backups.models import STATUS_RANK, BackupConnector, BackupStatus, ConnectorKind, status_rank
from backups.selectors import (
    STATUS_ORDER,
    FleetHealth,
    connector_health_list,
    filtered_connectors,
    fleet_health,
)
from customers.models import Customer
from integrations.services import connection_freshness, setup_label, setup_url

from ..fleet_tiles import fleet_tiles
from ..timefmt import iso
from .rows import BADGE, KIND_LABELS, STATUS_LABELS, connector_row, csv_response, require

PAGE_SIZE = 50
REFRESH_CHOICES = (0, 60, 300)
ALL_STATUSES = "all"


def _dashboard_filters(request: HttpRequest) -> dict[str, Any]:
    wanted = request.GET.getlist("status")
    statuses = [s for s in wanted if s in STATUS_LABELS]
    kind = request.GET.get("kind", "")
    customer = request.GET.get("customer", "")
    return {
        "statuses": statuses,
        # "all": every status; no status at all: what needs attention (the default).
        "all_statuses": ALL_STATUSES in wanted and not statuses,
        "kind": kind if kind in KIND_LABELS else "",
        "customer_id": int(customer) if customer.isdecimal() else None,
        "search": request.GET.get("q", "").strip()[:100],
        "seat_exceeded": request.GET.get("seats") == "exceeded",
        "deletion_scheduled": request.GET.get("deletion") == "scheduled",
    }


def _scope(filters: dict[str, Any]) -> dict[str, Any]:
    """The filters that select connectors (all but status)."""
    return {
        name: filters[name]
        for name in ("kind", "customer_id", "search", "seat_exceeded", "deletion_scheduled")
    }


def _is_filtered(filters: dict[str, Any]) -> bool:
    return any(_scope(filters).values())


def _attention_list(filters: dict[str, Any]) -> QuerySet[BackupConnector]:
    """The list under the tiles. By default what needs attention: every connector that
    is not OK, and every one with an open alert (an OK status with a failed job in the
    audit log is still a failure)."""
    connectors = connector_health_list(
        statuses=filters["statuses"] or None, **_scope(filters)
    ).annotate(
        open_alert_id=open_alert_for_connector(),
        **success_rate_annotations(today=timezone.now().date(), days=SUCCESS_RATE_DAYS),
    )
    return _needing_attention(connectors, filters)


def _needing_attention(
    connectors: QuerySet[BackupConnector], filters: dict[str, Any]
) -> QuerySet[BackupConnector]:
    if not _lists_ok_with_alert(filters):
        return connectors
    # status_now is OK only for a status row saying OK (no row counts as unknown).
    return connectors.filter(
        ~Q(backup_status__status=BackupStatus.OK) | Q(connector_has_open_alert())
    )


def _attention_total(filters: dict[str, Any], health: FleetHealth) -> int:
    """The list's length, from the tiles' pass over the same connectors (counting the
    list apart scanned them all again: most of the page's time at 80,000 connectors)."""
    if health.never_read is None or health.other is None:
        raise ValueError("The tiles were not counted for a list (for_list).")
    if filters["statuses"]:
        return sum(health.statuses[status] for status in set(filters["statuses"]))
    if not _lists_ok_with_alert(filters):
        return health.total
    if health.ok_needing_attention is None:
        raise ValueError("The tiles did not count the OK connectors with an open alert.")
    return health.total - health.statuses[BackupStatus.OK] + health.ok_needing_attention


def _attention_ids(
    filters: dict[str, Any], health: FleetHealth, start: int, size: int
) -> list[int]:
    """The ids of one page of the list, worst first.

    The whole fleet's list (a status filter at most) is read in the order of index
    connector_status_rank_idx (rank, oldest success): the database reads the page's rows
    instead of sorting every connector (198 ms -> 7 ms at 80,000). The connectors without
    a status row (never read: unknown, no success yet) are merged in, in SQL, only when
    the tiles counted any: finding them scans the fleet. A list narrowed by search,
    customer, kind or an account's state is sorted whole instead: walking the index in
    the hope of matches costs more than sorting the few rows that match."""
    statuses = filters["statuses"]
    if _is_filtered(filters):
        sorted_whole = _needing_attention(
            connector_health_list(statuses=statuses or None, **_scope(filters)), filters
        )
        return list(
            sorted_whole.select_related(None).values_list("pk", flat=True)[start : start + size]
        )
    connectors = _needing_attention(filtered_connectors(**_scope(filters)), filters)
    with_status = connectors.filter(backup_status__isnull=False)
    if statuses:
        with_status = with_status.filter(backup_status__status__in=statuses)
    columns = ("pk", "rank", "last", "name")
    ranked = with_status.annotate(
        rank=status_rank("backup_status__status"), last=F("backup_status__last_success_at")
    ).values_list(*columns)
    order = ("rank", F("last").asc(nulls_first=True), "name", "pk")
    if not health.never_read or (statuses and BackupStatus.UNKNOWN not in statuses):
        return [row[0] for row in ranked.order_by(*order)[start : start + size]]
    never_read = (
        connectors.filter(backup_status__isnull=True)
        .annotate(
            rank=Value(STATUS_RANK[BackupStatus.UNKNOWN]),
            last=Value(None, output_field=DateTimeField()),
        )
        .values_list(*columns)
        .order_by("name", "pk")[: start + size]
    )
    both = ranked.order_by(*order)[: start + size].union(never_read, all=True)
    return [row[0] for row in both.order_by(*order)[start : start + size]]


def _attention_page(
    filters: dict[str, Any], number: str | None, health: FleetHealth, *, size: int = PAGE_SIZE
) -> tuple[Page[int], list[BackupConnector]]:
    """A page of the list in two cheap reads instead of one wide one: the page's ids
    (`_attention_ids`), then those connectors in full. Its length comes from `health`:
    the tiles of the same connectors."""
    paginator: Paginator[int] = Paginator(range(_attention_total(filters, health)), size)
    # isdecimal, not isdigit: "²" is a digit that int() refuses.
    wanted_number = int(number) if number and number.isdecimal() and int(number) > 0 else 1
    page = paginator.get_page(wanted_number)  # past the end: the last page
    wanted = _attention_ids(filters, health, (page.number - 1) * size, size)
    full = {c.pk: c for c in _attention_list(filters).filter(pk__in=wanted).order_by()}
    return page, [full[pk] for pk in wanted if pk in full]


# No filter at all: the fleet, what needs attention (the wallboard's view).
NO_FILTERS: dict[str, Any] = {
    "statuses": [],
    "all_statuses": False,
    "kind": "",
    "customer_id": None,
    "search": "",
    "seat_exceeded": False,
    "deletion_scheduled": False,
}


def needs_attention(count: int, health: FleetHealth) -> tuple[int, list[BackupConnector]]:
    """Fleet-wide, worst first: how many connectors are not OK or have an open alert,
    and the first `count` of them (the wallboard's view), read as the dashboard's page.
    `health`: the fleet-wide tiles (`dashboard_summary`'s "fleet")."""
    page, connectors = _attention_page(NO_FILTERS, "1", health, size=count)
    return page.paginator.count, connectors


def _lists_ok_with_alert(filters: dict[str, Any]) -> bool:
    """The list shows what needs attention: OK connectors only when they have an open
    alert (`_needing_attention`). A status filter lists those statuses, and an account's
    seats or deletion concern every connector of it, healthy ones too."""
    return not (
        filters["statuses"]
        or filters["all_statuses"]
        or filters["seat_exceeded"]
        or filters["deletion_scheduled"]
    )


def dashboard_summary(
    *, now: datetime, filters: dict[str, Any] | None = None, for_list: bool = False
) -> dict[str, Any]:
    """Tiles and chart: fleet-wide, or for the connectors the filters select (they say
    which). `for_list`: the attention list under them takes its length from them (its
    "fleet"), so they also count the OK connectors with an open alert when it lists those.
    Fleet-wide they always count all that and are kept between views until what they
    count changes (vectis.fleet_tiles)."""
    scoped = filters is not None and _is_filtered(filters)
    if filters is not None and scoped:
        connectors = filtered_connectors(**_scope(filters))
        with_open_alert = (
            Q(pk__in=connectors_with_open_alert())
            if for_list and _lists_ok_with_alert(filters)
            else None
        )
        health = fleet_health(
            now=now, connectors=connectors, for_list=for_list, ok_needing_attention=with_open_alert
        )
        open_alert_count = open_alerts().filter(connector__in=connectors.values("pk")).count()
    else:
        # Fleet-wide: kept between views until a sync, an alert pass or an edit changes
        # what they count (every list-sizing count included).
        tiles = fleet_tiles(now=now)
        health, open_alert_count = tiles.health, tiles.open_alerts
    counts = health.statuses
    freshness = connection_freshness()
    return {
        "status_cards": [
            {"status": s, "label": STATUS_LABELS[s], "count": counts[s], "badge": BADGE[s]}
            for s in (
                BackupStatus.FAILED,
                BackupStatus.WARNING,
                BackupStatus.UNKNOWN,
                BackupStatus.ONBOARDING,
                BackupStatus.OK,
            )
        ],
        "open_alert_count": open_alert_count,
        "freshness": health.freshness,
        "fleet": health,
        "connector_total": health.total,
        "scope": "matching the filters below" if scoped else "fleet-wide",
        "connections": freshness,
        "setup_url": setup_url(),
        "setup_label": setup_label(),
        "failed_deliveries": failed_deliveries(now=now),
        "disabled_channels": disabled_channels(),
    }


def dashboard(request: HttpRequest, *, site: AdminSite) -> HttpResponseBase:
    require(request, "backups.view_backupconnector")
    filters = _dashboard_filters(request)
    connectors = _attention_list(filters)
    if request.GET.get("format") == "csv":
        return _connectors_csv(connectors)
    summary = dashboard_summary(now=timezone.now(), filters=filters, for_list=True)
    page, on_page = _attention_page(filters, request.GET.get("page"), summary["fleet"])
    refresh = request.GET.get("refresh", "")
    query = request.GET.copy()
    query.pop("page", None)
    export = query.copy()
    export["format"] = "csv"
    context = {
        **site.each_context(request),
        "view_health": summary,
        "title": "Backup health",
        "page": page,
        "rows": _with_maintenance([connector_row(c) for c in on_page]),
        "success_rate_days": SUCCESS_RATE_DAYS,
        "filters": filters,
        "status_choices": [(s, STATUS_LABELS[s]) for s in STATUS_ORDER],
        "kind_choices": ConnectorKind.choices,
        "refresh": int(refresh) if refresh.isdecimal() and int(refresh) in REFRESH_CHOICES else 0,
        "refresh_choices": REFRESH_CHOICES,
        "query_string": query.urlencode(),
        "csv_url": "?" + export.urlencode(),
        "filter_customer": Customer.objects.filter(pk=filters["customer_id"]).first()
        if filters["customer_id"]
        else None,
    }
    return TemplateResponse(request, "admin/backups/dashboard.html", context)


def _with_maintenance(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mark the rows a maintenance window covers now (their messages are held)."""
    held = connectors_in_maintenance([row["connector"].pk for row in rows], timezone.now())
    for row in rows:
        row["in_maintenance"] = row["connector"].pk in held
    return rows


def _connectors_csv(connectors: QuerySet[BackupConnector]) -> StreamingHttpResponse:
    zone = timezone.get_current_timezone()

    def rows() -> Iterator[list[Any]]:
        for connector in connectors.iterator(chunk_size=2000):
            row = connector_row(connector)
            yield [
                row["customer"].name if row["customer"] else "",
                connector.name,
                row["kind_label"],
                connector.vendor_type,
                row["status"],
                row["reason"],
                iso(row["last_success"], zone),
                iso(row["last_backup"], zone),
                row["success_rate_text"].removesuffix(" %"),
                connector.external_id,
                row["open_alert_id"] or "",
            ]

    header = [
        "customer",
        "connector",
        "kind",
        "vendor_type",
        "status",
        "reason",
        "last_successful_backup",
        "last_backup",
        f"success_rate_{SUCCESS_RATE_DAYS}d_percent",
        "vendor_connector_id",
        "open_alert",
    ]
    return csv_response(f"vectis-connectors-{timezone.now():%Y%m%d-%H%M}.csv", header, rows())
