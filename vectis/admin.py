"""Admin registrations that compose several apps: the customer list with backup health
and the customer page (connectors, open alerts, timeline)."""

from __future__ import annotations

import io
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from PIL import Image
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from customers.models import Customer
from integrations.admin import HistoryAdmin

from .models import ApiKey, MonthlyReport, ReportSettings, ReportSubscription
from .pages.customer import (
    RANK_STATUS,
    customer_page_context,
    customer_timeline_csv,
    customers_with_health,
    in_worst_status,
)
from .pages.rows import BADGE, STATUS_LABELS
from .reports.monthly import Month, recent_months
from .reports.pdf import logo_uri, render_pdf, report_filename

# A logo is stored in the database and inlined in every report: keep it small.
LOGO_MAX_BYTES = 512 * 1024
LOGO_FORMATS = {"PNG", "JPEG", "MPO"}  # MPO: a phone's JPEG
LOGO_BOX = (1200, 400)  # kept at most this size (pixels)
LOGO_MAX_PIXELS = 16_000_000  # refused above (a picture, not a logo)


class WorstStatusFilter(admin.SimpleListFilter):
    title = "worst backup status"
    parameter_name = "worst"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            (str(rank), str(STATUS_LABELS[status])) for rank, status in sorted(RANK_STATUS.items())
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        status = RANK_STATUS.get(int(value)) if value and value.isdigit() else None
        return in_worst_status(queryset, status) if status is not None else queryset


class ReportSubscriptionInline(admin.StackedInline[ReportSubscription, Customer]):
    """Who receives the customer's monthly report (empty: nobody)."""

    model = ReportSubscription
    fields = ["recipients"]
    max_num = 1
    can_delete = False


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin[Customer]):
    inlines = [ReportSubscriptionInline]
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


class ReportSettingsForm(forms.ModelForm[ReportSettings]):
    logo_file = forms.ImageField(
        label="Logo",
        required=False,
        help_text="PNG or JPEG, at most 512 KB: at the top right of every report's first page.",
    )
    remove_logo = forms.BooleanField(label="Remove the logo", required=False)

    class Meta:
        model = ReportSettings
        fields = ["msp_name", "schedule_enabled", "send_hour"]

    def clean_logo_file(self) -> Any:
        upload = self.cleaned_data.get("logo_file")
        if not upload:
            return upload
        if upload.size > LOGO_MAX_BYTES:
            raise forms.ValidationError(
                f"The logo is {upload.size // 1024:,} KB; the limit is "
                f"{LOGO_MAX_BYTES // 1024} KB. Save it smaller (a 600 px wide PNG is plenty)."
            )
        image = getattr(upload, "image", None)  # checked by Pillow (forms.ImageField)
        if image is None or image.format not in LOGO_FORMATS:
            kind = getattr(image, "format", None) or "something else"
            raise forms.ValidationError(f"The logo must be a PNG or a JPEG, not {kind}.")
        width, height = image.size
        if width * height > LOGO_MAX_PIXELS:
            raise forms.ValidationError(
                f"The logo is {width} by {height} pixels, a photo rather than a logo: use "
                f"an image of at most {LOGO_MAX_PIXELS // 1_000_000} megapixels (Vectis "
                f"keeps it at {LOGO_BOX[0]} by {LOGO_BOX[1]} at most)."
            )
        return upload

    def save(self, commit: bool = True) -> ReportSettings:
        settings_row = super().save(commit=False)
        upload = self.cleaned_data.get("logo_file")
        if upload:
            settings_row.logo, settings_row.logo_type = small_png(upload), "image/png"
        elif self.cleaned_data.get("remove_logo"):
            settings_row.logo, settings_row.logo_type = b"", ""
        if commit:
            settings_row.save()
        return settings_row


def small_png(upload: Any) -> bytes:
    """The logo as it is kept: re-encoded as a PNG no larger than LOGO_BOX (metadata and
    anything else in the file left behind), since every report carries it."""
    upload.seek(0)
    with Image.open(upload) as image:
        image.load()
        picture = image.convert("RGBA") if image.mode not in ("RGB", "RGBA") else image.copy()
    picture.thumbnail(LOGO_BOX)
    out = io.BytesIO()
    picture.save(out, format="PNG", optimize=True)
    return out.getvalue()


@admin.register(ReportSettings)
class ReportSettingsAdmin(admin.ModelAdmin[ReportSettings]):
    """One page: the MSP's name and logo on the reports, and when they are sent."""

    form = ReportSettingsForm
    readonly_fields = ["current_logo"]
    fieldsets = [
        ("White-label", {"fields": ["msp_name", "current_logo", "logo_file", "remove_logo"]}),
        ("Schedule", {"fields": ["schedule_enabled", "send_hour"]}),
    ]

    @admin.display(description="Current logo")
    def current_logo(self, settings_row: ReportSettings) -> str:
        uri = logo_uri(settings_row)
        if not uri:
            return "None: the report shows the MSP name alone."
        return format_html('<img src="{}" alt="logo" style="max-height:56px">', uri)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # There is one row: the list is its page.
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        ReportSettings.objects.get_or_create(pk=1)
        return HttpResponseRedirect(reverse("admin:vectis_reportsettings_change", args=[1]))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(MonthlyReport)
class MonthlyReportAdmin(HistoryAdmin[MonthlyReport]):
    """The months whose reports went out (each message is in the delivery log)."""

    list_display = ["month_label", "customer", "recipients", "size", "created_at"]
    list_select_related = ["customer"]
    search_fields = ["customer__name"]
    fields = ["customer", "month", "recipients", "filename", "size", "created_at"]

    @admin.display(description="Month", ordering="month")
    def month_label(self, report: MonthlyReport) -> str:
        return f"{report.month:%Y-%m}"


# The library's own key model is not used: Vectis's keys have a scope (ApiKey).
if admin.site.is_registered(APIKey):
    admin.site.unregister(APIKey)


@admin.register(ApiKey)
class ApiKeyAdmin(APIKeyModelAdmin):
    """Keys to the public API: the key is shown once, on the page after Save; only its
    hash is kept. Revoke a key to refuse it from the next request on."""

    list_display = (  # type: ignore[assignment]
        "name",
        "prefix",
        "scope",
        "created",
        "created_by",
        "expiry_date",
        "last_used_at",
        "revoked",
    )
    list_filter = ("scope", "revoked")  # type: ignore[assignment]
    fields = ["name", "scope", "expiry_date", "revoked", "prefix", "created_by", "last_used_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        fixed: tuple[str, ...] = ("prefix", "created_by", "last_used_at")
        if obj is not None:
            fixed += ("scope",)  # a key's powers do not change under it: make a new one
        if obj is not None and obj.revoked:
            fixed += ("name", "expiry_date", "revoked")
        return fixed

    def save_model(
        self, request: HttpRequest, obj: Any, form: Any = None, change: bool = False
    ) -> None:
        if change:
            obj.save()
            return
        # The key goes on the page that answers this request, never into the session
        # (messages are stored there) nor anywhere else: only its hash is kept.
        obj.created_by = request.user.get_username()
        obj.shown_once = ApiKey.objects.assign_key(obj)
        obj.save()

    def response_add(
        self, request: HttpRequest, obj: Any, post_url_continue: str | None = None
    ) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": f"API key “{obj.name}” created",
            "opts": self.model._meta,
            "api_key": obj,
            "secret": getattr(obj, "shown_once", ""),
        }
        response = TemplateResponse(request, "admin/vectis/apikey/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoked, not deleted: its name stays on what it did
