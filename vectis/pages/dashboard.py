"""The backup health dashboard (Admin → Backups, and the admin home's first panel):
freshness per connection, status tiles and the freshness chart (fleet-wide, or for what
the filters select — they say which), and the list of what needs attention."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.contrib.admin import AdminSite
from django.core.paginator import Page, Paginator
from django.db.models import Count, Q, QuerySet, Window
from django.http import HttpRequest, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.utils import timezone

from alerts.maintenance import connectors_in_maintenance
from alerts.selectors import (
    connector_has_open_alert,
    disabled_channels,
    failed_deliveries,
    open_alert_for_connector,
    open_alerts,
)
from backups.jobs import SUCCESS_RATE_DAYS, success_rate_annotations
from backups.models import BackupConnector, BackupStatus, ConnectorKind
from backups.selectors import (
    STATUS_ORDER,
    connector_health_list,
    filtered_connectors,
    fleet_health,
    live_connectors,
)
from customers.models import Customer
from integrations.services import connection_freshness, setup_label, setup_url

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
        "customer_id": int(customer) if customer.isdigit() else None,
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
    # An account's seats or deletion concern every connector of it, healthy ones too.
    if (
        filters["statuses"]
        or filters["all_statuses"]
        or filters["seat_exceeded"]
        or (filters["deletion_scheduled"])
    ):
        return connectors
    # status_now is OK only for a status row saying OK (no row counts as unknown).
    return connectors.filter(
        ~Q(backup_status__status=BackupStatus.OK) | Q(connector_has_open_alert())
    )


def _attention_page(
    filters: dict[str, Any], number: str | None, *, size: int = PAGE_SIZE
) -> tuple[Page[int], list[BackupConnector]]:
    """A page of the list in two cheap reads instead of one wide one: the page's ids,
    sorted over narrow rows, with the list's length counted in the same query (a window
    count); then those 50 connectors in full. At 80,000 connectors, sorting full rows
    with every joined table's columns, and counting them apart, took most of the page's
    time (233 + 89 ms against about 100)."""
    ids = (
        _needing_attention(
            connector_health_list(statuses=filters["statuses"] or None, **_scope(filters)),
            filters,
        )
        .select_related(None)
        .values_list("pk", flat=True)
    )
    wanted_number = int(number) if number and number.isdigit() and int(number) > 0 else 1
    start = (wanted_number - 1) * size
    first_read = list(
        ids.annotate(total=Window(Count("pk"))).values_list("pk", "total")[start : start + size]
    )
    paginator: Paginator[int] = Paginator(ids, size)
    if first_read:
        paginator.__dict__["count"] = first_read[0][1]  # (a cached_property: no COUNT query)
    page = paginator.get_page(wanted_number)
    if page.number == wanted_number and first_read:
        wanted = [pk for pk, _total in first_read]
    else:  # a page past the end: get_page fell back to the last one
        wanted = list(page.object_list)
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


def needs_attention(count: int) -> tuple[int, list[BackupConnector]]:
    """Fleet-wide, worst first: how many connectors are not OK or have an open alert,
    and the first `count` of them (the wallboard's view), read as the dashboard's page."""
    page, connectors = _attention_page(NO_FILTERS, "1", size=count)
    return page.paginator.count, connectors


def dashboard_summary(*, now: datetime, filters: dict[str, Any] | None = None) -> dict[str, Any]:
    """Tiles and chart: fleet-wide, or for the connectors the filters select (they say
    which)."""
    scoped = filters is not None and _is_filtered(filters)
    connectors = (
        filtered_connectors(**_scope(filters))
        if filters is not None and scoped
        else live_connectors()
    )
    counts, freshness_buckets = fleet_health(now=now, connectors=connectors)
    alerts = (
        open_alerts().filter(connector__in=connectors.values("pk")) if scoped else open_alerts()
    )
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
        "open_alert_count": alerts.count(),
        "freshness": freshness_buckets,
        "connector_total": sum(counts.values()),
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
    page, on_page = _attention_page(filters, request.GET.get("page"))
    refresh = request.GET.get("refresh", "")
    query = request.GET.copy()
    query.pop("page", None)
    export = query.copy()
    export["format"] = "csv"
    context = {
        **site.each_context(request),
        "view_health": dashboard_summary(now=timezone.now(), filters=filters),
        "title": "Backup health",
        "page": page,
        "rows": _with_maintenance([connector_row(c) for c in on_page]),
        "success_rate_days": SUCCESS_RATE_DAYS,
        "filters": filters,
        "status_choices": [(s, STATUS_LABELS[s]) for s in STATUS_ORDER],
        "kind_choices": ConnectorKind.choices,
        "refresh": int(refresh) if refresh.isdigit() and int(refresh) in REFRESH_CHOICES else 0,
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
