"""Admin registrations that compose several apps: the customer list with backup health
and the customer page (connectors, open alerts, timeline)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from customers.models import Customer

from .pages.customer import (
    RANK_STATUS,
    customer_page_context,
    customer_timeline_csv,
    customers_with_health,
)
from .pages.rows import BADGE, STATUS_LABELS
from .reports.monthly import Month, recent_months
from .reports.pdf import render_pdf, report_filename


class WorstStatusFilter(admin.SimpleListFilter):
    title = "worst backup status"
    parameter_name = "worst"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            (str(rank), str(STATUS_LABELS[status])) for rank, status in sorted(RANK_STATUS.items())
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(worst_rank=int(value)) if value and value.isdigit() else queryset


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin[Customer]):
    list_display = ["name", "worst_status", "connectors", "open_alerts"]
    list_filter = [WorstStatusFilter]
    search_fields = ["name", "normalized_name"]
    fields = ["name"]
    change_form_template = "admin/customers/customer/change_form.html"
    list_per_page = 50

    def get_queryset(self, request: HttpRequest) -> QuerySet[Customer]:
        customers = super().get_queryset(request)
        match = request.resolver_match
        if match is not None and match.url_name == "customers_customer_changelist":
            return customers_with_health(customers)
        return customers

    def get_ordering(self, request: HttpRequest) -> list[str]:
        return ["name", "id"]

    @admin.display(description="Worst status", ordering="worst_rank")
    def worst_status(self, customer: Any) -> str:
        status = RANK_STATUS.get(customer.worst_rank)
        if status is None:
            return "—"
        return format_html(
            '<span class="vx-badge {}">{}</span>', BADGE[status], STATUS_LABELS[status]
        )

    @admin.display(description="Connectors", ordering="connector_count")
    def connectors(self, customer: Any) -> int:
        return int(customer.connector_count)

    @admin.display(description="Open alerts", ordering="open_alert_count")
    def open_alerts(self, customer: Any) -> int:
        return int(customer.open_alert_count)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if request.method == "GET" and request.GET.get("format") == "csv":
            customer = self.get_object(request, object_id)
            if customer is not None and self.has_view_permission(request, customer):
                return customer_timeline_csv(request, customer)  # type: ignore[return-value]
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self) -> list[URLPattern]:
        report = self.admin_site.admin_view(self.report_view)
        return [
            path("<path:object_id>/report/", report, name="customers_customer_report"),
            *super().get_urls(),
        ]

    def report_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The monthly backup report of one customer, downloaded at once (PDF)."""
        customer = self.get_object(request, object_id)
        if customer is None:
            raise Http404("No such customer.")
        if not self.has_view_permission(request, customer):
            raise PermissionDenied
        try:
            month = Month.parse(request.GET.get("month", ""))
        except ValueError as exc:
            messages.error(request, str(exc))
            return HttpResponseRedirect(
                reverse("admin:customers_customer_change", args=[customer.pk])
            )
        response = HttpResponse(render_pdf(customer, month), content_type="application/pdf")
        filename = report_filename(customer, month)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Customer | None = None,
    ) -> HttpResponse:
        # The customer page: connectors, open alerts and the timeline under the form.
        if obj is not None and request.method == "GET":
            context.update(customer_page_context(request, obj))
            context["title"] = obj.name
            context["report_url"] = reverse("admin:customers_customer_report", args=[obj.pk])
            context["report_months"] = recent_months(timezone.now(), 12)
        return super().render_change_form(request, context, add, change, form_url, obj)
