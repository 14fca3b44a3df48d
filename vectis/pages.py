"""The daily pages: backup health dashboard, customer page, account-link review, CSV.

They live in the project package because they compose every app (backups, alerts,
integrations, customers), while the apps themselves depend on each other one way only.
Every page is a fixed number of queries, whatever the number of rows.
"""

from __future__ import annotations

import csv
import difflib
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import (
    Count,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
)
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme

from alerts.models import AlertEvent
from alerts.selectors import (
    customer_alert_events,
    failed_deliveries,
    open_alert_for_connector,
    open_alerts,
)
from backups import services as backup_services
from backups.models import AuditCategory, BackupConnector, BackupStatus, ConnectorKind
from backups.selectors import (
    STATUS_ORDER,
    STATUS_SEVERITY,
    backup_freshness,
    connector_health_list,
    customer_timeline,
    effective_status,
    filtered_connectors,
    live_connectors,
    severity,
    status_counts,
)
from customers.models import Customer
from customers.names import normalize_company_name
from integrations.models import AccountLink
from integrations.services import connection_freshness, setup_url

PAGE_SIZE = 50
REVIEW_PAGE_SIZE = 25
TIMELINE_PAGE_SIZE = 50
REFRESH_CHOICES = (0, 60, 300)
STATUS_LABELS = dict(BackupStatus.choices)
KIND_LABELS = dict(ConnectorKind.choices)
BADGE = {
    BackupStatus.OK: "vx-ok",
    BackupStatus.WARNING: "vx-warning",
    BackupStatus.FAILED: "vx-failed",
    BackupStatus.ONBOARDING: "vx-onboarding",
    BackupStatus.UNKNOWN: "vx-unknown",
}


def _require(request: HttpRequest, *perms: str) -> None:
    if not request.user.has_perms(perms):
        raise PermissionDenied


# --- dashboard ---------------------------------------------------------------------------------


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
    }


def _is_filtered(filters: dict[str, Any]) -> bool:
    return bool(filters["kind"] or filters["customer_id"] or filters["search"])


def _attention_list(filters: dict[str, Any]) -> QuerySet[BackupConnector]:
    """The list under the tiles. By default what needs attention: every connector that
    is not OK, and every one with an open alert (an OK status with a failed job in the
    audit log is still a failure)."""
    connectors = connector_health_list(
        statuses=filters["statuses"] or None,
        kind=filters["kind"],
        customer_id=filters["customer_id"],
        search=filters["search"],
    ).annotate(open_alert_id=open_alert_for_connector())
    if filters["statuses"] or filters["all_statuses"]:
        return connectors
    # status_now is OK only for a status row saying OK (no row counts as unknown).
    return connectors.filter(
        ~Q(backup_status__status=BackupStatus.OK) | Q(open_alert_id__isnull=False)
    )


def dashboard_summary(*, now: datetime, filters: dict[str, Any] | None = None) -> dict[str, Any]:
    """Tiles and chart: fleet-wide, or for the connectors the filters select (they say
    which)."""
    scoped = filters is not None and _is_filtered(filters)
    connectors = (
        filtered_connectors(
            kind=filters["kind"], customer_id=filters["customer_id"], search=filters["search"]
        )
        if filters is not None and scoped
        else live_connectors()
    )
    counts = status_counts(connectors)
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
        "freshness": backup_freshness(now=now, connectors=connectors),
        "connector_total": sum(counts.values()),
        "scope": "matching the filters below" if scoped else "fleet-wide",
        "connections": freshness,
        "setup_url": setup_url(),
        "failed_deliveries": failed_deliveries(now=now),
    }


def dashboard(request: HttpRequest, *, site: AdminSite) -> HttpResponseBase:
    _require(request, "backups.view_backupconnector")
    filters = _dashboard_filters(request)
    connectors = _attention_list(filters)
    if request.GET.get("format") == "csv":
        return _connectors_csv(connectors)
    page = Paginator(connectors, PAGE_SIZE).get_page(request.GET.get("page"))
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
        "rows": [_connector_row(c) for c in page.object_list],
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


def _connector_row(connector: BackupConnector) -> dict[str, Any]:
    status_row = getattr(connector, "backup_status", None)
    status = getattr(connector, "status_now", None) or (
        status_row.status if status_row else BackupStatus.UNKNOWN
    )
    return {
        "connector": connector,
        "customer": connector.customer,
        "account": connector.account_link,
        "status": status,
        "status_label": STATUS_LABELS.get(status, status),
        "badge": BADGE.get(status, "vx-unknown"),
        "kind_label": KIND_LABELS.get(connector.kind, connector.kind),
        "last_success": status_row.last_success_at if status_row else None,
        "last_backup": status_row.last_backup_at if status_row else None,
        "reason": (status_row.reason_text or status_row.reason) if status_row else "",
        "open_alert_id": getattr(connector, "open_alert_id", None),
    }


def _csv_response(
    filename: str, header: list[str], rows: Iterator[list[Any]]
) -> StreamingHttpResponse:
    class Echo:
        def write(self, value: str) -> str:
            return value

    writer = csv.writer(Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow(header)
        for row in rows:
            yield writer.writerow(row)

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""


def _connectors_csv(connectors: QuerySet[BackupConnector]) -> StreamingHttpResponse:
    def rows() -> Iterator[list[Any]]:
        for connector in connectors.iterator(chunk_size=2000):
            row = _connector_row(connector)
            yield [
                row["customer"].name if row["customer"] else "",
                connector.name,
                row["kind_label"],
                connector.vendor_type,
                row["status"],
                row["reason"],
                _iso(row["last_success"]),
                _iso(row["last_backup"]),
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
        "keepit_connector_guid",
        "open_alert",
    ]
    return _csv_response(f"vectis-connectors-{timezone.now():%Y%m%d-%H%M}.csv", header, rows())


# --- customers ---------------------------------------------------------------------------------


def customers_with_health(customers: QuerySet[Customer]) -> QuerySet[Customer]:
    """Worst status, live connectors and open alerts per customer, as subqueries."""
    live = BackupConnector.objects.filter(customer_id=OuterRef("pk"), removed_at__isnull=True)
    worst = (
        live.annotate(status_now=effective_status(), rank=severity())
        .order_by()
        .values("customer_id")
        .annotate(worst=Min("rank"))
        .values("worst")
    )
    connector_count = live.order_by().values("customer_id").annotate(n=Count("id")).values("n")
    alert_count = (
        open_alerts()
        .filter(connector__customer_id=OuterRef("pk"))
        .order_by()
        .values("connector__customer_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    return customers.annotate(
        worst_rank=Subquery(worst),
        connector_count=Coalesce(Subquery(connector_count), 0),
        open_alert_count=Coalesce(Subquery(alert_count), 0),
    )


RANK_STATUS = {rank: status for status, rank in STATUS_SEVERITY.items()}


def customer_page_context(request: HttpRequest, customer: Customer) -> dict[str, Any]:
    """Account links, connectors, open alerts and the timeline of one customer."""
    connectors = list(
        connector_health_list(customer_id=customer.pk).annotate(
            open_alert_id=open_alert_for_connector()
        )
    )
    categories = [c for c in request.GET.getlist("category") if c in dict(AuditCategory.choices)]
    show_alerts = "alerts" in request.GET.getlist("category") or not categories
    include_own = request.GET.get("own") == "1"
    events = customer_timeline(customer.pk, categories=categories, include_own_reads=include_own)
    page = Paginator(events, TIMELINE_PAGE_SIZE).get_page(request.GET.get("page"))
    audit = list(page.object_list)
    timeline: list[dict[str, Any]] = [
        {
            "type": "event",
            "at": e.occurred_at,
            "event": e,
            "failure": e.succeeded is False or e.allowed is False,
        }
        for e in audit
    ]
    if show_alerts:
        newest = None if page.number == 1 else (audit[0].occurred_at if audit else None)
        oldest = audit[-1].occurred_at if audit and page.has_next() else None
        for alert_event in customer_alert_events(customer.pk, newest=newest, oldest=oldest)[:200]:
            timeline.append(
                {
                    "type": "alert",
                    "at": alert_event.at,
                    "alert_event": alert_event,
                    "failure": alert_event.kind == AlertEvent.Kind.OPENED,
                }
            )
    timeline.sort(key=lambda item: item["at"], reverse=True)
    query = request.GET.copy()
    query.pop("page", None)
    export = request.GET.copy()
    export["format"] = "csv"
    links = list(AccountLink.objects.filter(customer=customer).select_related("connection"))
    freshness = connection_freshness({link.connection_id for link in links})
    failed = {row.pk: row.failed_accounts for row in freshness}
    for link in links:
        # Its data is older than "data as of": the latest sync could not read it.
        link.unread_in_last_sync = link.external_id in failed.get(link.connection_id, ())  # type: ignore[attr-defined]
    return {
        "customer_links": links,
        "customer_connections": freshness,
        "setup_url": setup_url(),
        "customer_connectors": [_connector_row(c) for c in connectors],
        "customer_status_counts": _count_rows(connectors),
        "customer_alerts": list(
            open_alerts().filter(connector__customer=customer).select_related("connector", "rule")
        ),
        "timeline": timeline,
        "timeline_page": page,
        "timeline_categories": [(c, label) for c, label in AuditCategory.choices],
        "selected_categories": categories
        + (["alerts"] if "alerts" in request.GET.getlist("category") else []),
        "include_own_reads": include_own,
        "timeline_query": query.urlencode(),
        "timeline_csv": "?" + export.urlencode(),
    }


def _count_rows(connectors: Sequence[BackupConnector]) -> list[dict[str, Any]]:
    counts: dict[str, int] = {}
    for connector in connectors:
        status = getattr(connector, "status_now", BackupStatus.UNKNOWN)
        counts[status] = counts.get(status, 0) + 1
    return [
        {"label": STATUS_LABELS[s], "count": counts[s], "badge": BADGE[s]}
        for s in STATUS_ORDER
        if counts.get(s)
    ]


def customer_timeline_csv(request: HttpRequest, customer: Customer) -> StreamingHttpResponse:
    categories = [c for c in request.GET.getlist("category") if c in dict(AuditCategory.choices)]
    events = customer_timeline(
        customer.pk, categories=categories, include_own_reads=request.GET.get("own") == "1"
    )

    def rows() -> Iterator[list[Any]]:
        for event in events.iterator(chunk_size=2000):
            yield [
                event.occurred_at.isoformat(),
                event.category,
                event.area,
                event.message,
                event.actor,
                "" if event.succeeded is None else str(event.succeeded).lower(),
                event.connector.name if event.connector else "",
                event.client_ip,
                str(event.is_own_read).lower(),
            ]

    header = [
        "occurred_at",
        "category",
        "area",
        "message",
        "actor",
        "succeeded",
        "connector",
        "client_ip",
        "vectis_own_read",
    ]
    slug = normalize_company_name(customer.name).replace(" ", "-") or "customer"
    return _csv_response(f"vectis-timeline-{slug}.csv", header, rows())


# --- account-link review -------------------------------------------------------------------------

REVIEW_STATES = {
    "review": [AccountLink.State.UNLINKED, AccountLink.State.AMBIGUOUS],
    "excluded": [AccountLink.State.EXCLUDED],
    "linked": [AccountLink.State.LINKED],
}


def _trigrams(text: str) -> set[str]:
    padded = f"  {text} "
    return {padded[i : i + 3] for i in range(len(padded) - 2)}


def _suggestions(links: list[AccountLink]) -> dict[int, list[dict[str, Any]]]:
    """Normalised and close matches with a score (0-100), from one query of customers.

    Close matches are scored with difflib, but only for the few names that share the
    most distinctive trigrams with the account's name: scoring every customer for every
    account costs seconds with thousands of customers.
    """
    by_normalized: dict[str, list[tuple[int, str]]] = {}
    for pk, name, normalized in Customer.objects.values_list("pk", "name", "normalized_name"):
        by_normalized.setdefault(normalized, []).append((pk, name))
    names = list(by_normalized)
    postings: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        for trigram in _trigrams(name):
            postings.setdefault(trigram, []).append(index)
    too_common = max(50, len(names) // 5)
    result: dict[int, list[dict[str, Any]]] = {}
    for link in links:
        key = normalize_company_name(link.display_name)
        found: list[dict[str, Any]] = [
            {"pk": pk, "name": name, "score": 100, "why": "same normalised name"}
            for pk, name in by_normalized.get(key, [])
        ]
        shared: Counter[int] = Counter()
        for trigram in _trigrams(key):
            posting = postings.get(trigram, [])
            if len(posting) <= too_common:
                shared.update(posting)
        scored = []
        for index, _count in shared.most_common(20):
            close = names[index]
            if close == key:
                continue
            ratio = difflib.SequenceMatcher(None, key, close).ratio()
            if ratio >= 0.6:
                scored.append((ratio, close))
        for ratio, close in sorted(scored, reverse=True)[:5]:
            found += [
                {"pk": pk, "name": name, "score": round(100 * ratio), "why": "similar name"}
                for pk, name in by_normalized[close]
            ]
        result[link.pk] = found[:8]
    return result


def account_review(request: HttpRequest, *, site: AdminSite) -> HttpResponse:
    _require(request, "integrations.view_accountlink")
    if request.method == "POST":
        return _review_action(request)
    tab = request.GET.get("tab", "review")
    states = REVIEW_STATES.get(tab, REVIEW_STATES["review"])
    links = (
        AccountLink.objects.filter(state__in=states, removed_at__isnull=True)
        .select_related("customer", "connection")
        .annotate(
            connector_count=Count("connectors", filter=Q(connectors__removed_at__isnull=True))
        )
        .order_by("company_name", "id")
    )
    search = request.GET.get("q", "").strip()
    if search:
        links = links.filter(
            Q(company_name__icontains=search)
            | Q(contact_name__icontains=search)
            | Q(external_id__iexact=search)
        )
    page = Paginator(links, REVIEW_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = list(page.object_list)
    suggestions = _suggestions(rows)
    counts = dict(
        AccountLink.objects.filter(removed_at__isnull=True)
        .values_list("state")
        .annotate(n=Count("id"))
    )
    context = {
        **site.each_context(request),
        "title": "Keepit accounts to review",
        "tab": tab,
        "page": page,
        "rows": [{"link": link, "suggestions": suggestions.get(link.pk, [])} for link in rows],
        "review_count": counts.get("unlinked", 0) + counts.get("ambiguous", 0),
        "excluded_count": counts.get("excluded", 0),
        "linked_count": counts.get("linked", 0),
        "search": search,
        "can_change": request.user.has_perm("integrations.change_accountlink"),
    }
    return TemplateResponse(request, "admin/review.html", context)


def _review_action(request: HttpRequest) -> HttpResponse:
    _require(request, "integrations.change_accountlink")
    link = get_object_or_404(AccountLink, pk=request.POST.get("link", ""))
    action = request.POST.get("action", "")
    name = link.display_name
    if action == "link":
        chosen = request.POST.get("customer") or request.POST.get("customer_id") or ""
        customer = Customer.objects.filter(pk=int(chosen)).first() if chosen.isdigit() else None
        if customer is None:
            messages.error(request, f"Choose a customer to link \u201c{name}\u201d to.")
        else:
            backup_services.link_account(link, customer)
            messages.success(
                request,
                f"\u201c{name}\u201d is now linked to \u201c{customer}\u201d; "
                "syncs will keep this link.",
            )
    elif action == "create":
        customer = backup_services.create_customer_for_account(link)
        messages.success(
            request, f"Created customer \u201c{customer}\u201d for \u201c{name}\u201d."
        )
    elif action == "exclude":
        backup_services.exclude_account(link, by=request.user.get_username())
        messages.success(
            request,
            f"\u201c{name}\u201d is excluded: its connectors are out of the dashboard and the "
            "alert rules, and its open alerts ended without a notice.",
        )
    elif action == "include":
        backup_services.include_account(link)
        messages.success(
            request, f"\u201c{name}\u201d is included again; the next sync matches it."
        )
    else:
        messages.error(request, "Unknown action.")
    return HttpResponseRedirect(safe_next(request, reverse("admin:account_review")))


def safe_next(request: HttpRequest, fallback: str) -> str:
    """The `next` the form carries if it stays on this site, else the fallback: a link
    in a phishing e-mail must not turn Vectis into a redirector."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return fallback
