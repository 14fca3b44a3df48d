"""Admin → Integrations → Keepit: connections, Test connection, Sync now, run history."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms import Form
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from backups.services import request_sync
from integrations.models import SyncRun
from integrations.services import credential_status, run_progress

from .client import KNOWN_REGIONS
from .forms import KeepitConnectionForm
from .models import KeepitConnection
from .provider import KeepitProvider

logger = logging.getLogger(__name__)

SECRET_POST_FIELDS = ("password", "token_password")
RECENT_RUNS = 10


@admin.register(KeepitConnection)
class KeepitConnectionAdmin(admin.ModelAdmin[KeepitConnection]):
    form = KeepitConnectionForm
    change_form_template = "admin/keepit/keepitconnection/change_form.html"
    list_display = [
        "name",
        "region_display",
        "account_display",
        "enabled",
        "state_display",
        "last_success_display",
    ]
    list_filter = ["enabled"]
    search_fields = ["name"]
    actions = None

    def get_fieldsets(  # type: ignore[override]
        self, request: HttpRequest, obj: KeepitConnection | None = None
    ) -> list[tuple[str | None, dict[str, Any]]]:
        secrets = obj.secrets if obj is not None and obj.pk else {}
        credentials = ["username", "password"]
        if secrets.get("password"):
            credentials.append("clear_password")
        credentials += ["token_login", "token_password"]
        if secrets.get("token_password"):
            credentials.append("clear_token_password")
        return [
            (None, {"fields": ["name", "enabled"]}),
            (
                "Keepit account",
                {
                    "fields": ["keepit_url", "region", "account_guid"],
                    "description": (
                        "Find region and account GUID in the address of your Keepit account: "
                        "https://[region].keepit.com/users/[account-guid]."
                    ),
                },
            ),
            (
                "Credentials",
                {
                    "fields": credentials,
                    "description": (
                        "A dedicated API token with read-only rights is recommended. When both "
                        "API token fields are filled, they are used instead of Username and "
                        "Password."
                    ),
                },
            ),
        ]

    # --- list columns --------------------------------------------------------------------

    @admin.display(description="Region")
    def region_display(self, obj: KeepitConnection) -> str:
        return obj.region

    @admin.display(description="Account GUID")
    def account_display(self, obj: KeepitConnection) -> str:
        return obj.account_guid

    @admin.display(description="State")
    def state_display(self, obj: KeepitConnection) -> str:
        badge = {"Failing": "vx-failed", "Degraded": "vx-warning", "Enabled": "vx-ok"}.get(
            obj.state, "vx-unknown"
        )
        return format_html('<span class="vx-badge {}">{}</span>', badge, obj.state)

    @admin.display(description="Last successful sync")
    def last_success_display(self, obj: KeepitConnection) -> Any:
        # The moment itself: the admin shows it the one Vectis way (vectis/admin_times.py).
        return obj.last_success_at if obj.last_success_at is not None else "never"

    # --- saving --------------------------------------------------------------------------

    def construct_change_message(
        self, request: HttpRequest, form: Form, formsets: Any, add: bool = False
    ) -> list[dict[str, Any]]:
        # Field labels only, never values: secrets stay out of the admin history.
        if add:
            return [{"added": {}}]
        assert isinstance(form, KeepitConnectionForm)
        changed = form.changed_fields()
        return [{"changed": {"fields": changed}}] if changed else []

    @method_decorator(sensitive_post_parameters(*SECRET_POST_FIELDS))
    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        return super().changeform_view(request, object_id, form_url, extra_context)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: KeepitConnection | None = None,
    ) -> HttpResponse:
        # The connection's state and recent runs, from the object the view already loaded.
        # Test connection and Find my region are for those who may change credentials.
        context["can_configure"] = (
            self.has_change_permission(request, obj) if obj else self.has_add_permission(request)
        )
        context["keepit_regions"] = KNOWN_REGIONS
        context["test_url"] = reverse("admin:keepit_keepitconnection_test_new")
        context["find_region_url"] = reverse("admin:keepit_keepitconnection_find_region_new")
        if obj is not None and obj.pk:
            context["connection_state"] = obj
            context["credential"] = credential_status(obj, now=timezone.now())
            upcoming = obj.next_sync_at
            context["next_sync_at"] = upcoming if upcoming and upcoming > timezone.now() else None
            context["sync_interval_minutes"] = settings.VECTIS_SYNC_INTERVAL_MINUTES
            context["recent_runs"] = list(
                SyncRun.objects.filter(connection_id=obj.pk).order_by("-started_at")[:RECENT_RUNS]
            )
            context["sync_url"] = reverse("admin:keepit_keepitconnection_sync", args=[obj.pk])
            context["progress_url"] = reverse(
                "admin:keepit_keepitconnection_progress", args=[obj.pk]
            )
            context["progress"] = run_progress(obj.pk)
            requested = request.session.pop("vectis_sync_requested", None)
            if isinstance(requested, dict) and requested.get("connection") == obj.pk:
                context["sync_requested"] = True
                context["sync_requested_after"] = requested.get("after") or ""
            context["can_sync"] = request.user.has_perm("integrations.sync_connection")
            context["test_url"] = reverse("admin:keepit_keepitconnection_test", args=[obj.pk])
            context["find_region_url"] = reverse(
                "admin:keepit_keepitconnection_find_region", args=[obj.pk]
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- Test connection and Sync now ----------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        wrap = self.admin_site.admin_view
        return [
            path("test/", wrap(self.test_connection_view), name=f"{info}_test_new"),
            path(
                "<path:object_id>/test/",
                wrap(self.test_connection_view),
                name=f"{info}_test",
            ),
            path("find-region/", wrap(self.find_region_view), name=f"{info}_find_region_new"),
            path(
                "<path:object_id>/find-region/",
                wrap(self.find_region_view),
                name=f"{info}_find_region",
            ),
            path("<path:object_id>/sync/", wrap(self.sync_now_view), name=f"{info}_sync"),
            path("<path:object_id>/progress/", wrap(self.progress_view), name=f"{info}_progress"),
            *super().get_urls(),
        ]

    def _posted_form(
        self, request: HttpRequest, object_id: str | None
    ) -> KeepitConnectionForm | JsonResponse:
        """The connection form bound to what the page holds now, saved or not (blank
        secrets fall back to the stored ones), or the JSON answer that stops here."""
        connection: KeepitConnection | None = None
        if object_id is not None:
            connection = self.get_object(request, object_id)
            if connection is None:
                return JsonResponse(
                    {"ok": False, "message": "This connection no longer exists."}, status=404
                )
            allowed = self.has_change_permission(request, connection)
        else:
            allowed = self.has_add_permission(request)
        if not allowed:
            raise PermissionDenied
        return KeepitConnectionForm(request.POST, instance=connection or KeepitConnection())

    @method_decorator(require_POST)
    @method_decorator(sensitive_post_parameters(*SECRET_POST_FIELDS))
    def test_connection_view(
        self, request: HttpRequest, object_id: str | None = None
    ) -> JsonResponse:
        """Test the values currently in the form. Answers JSON for the in-page result."""
        form = self._posted_form(request, object_id)
        if isinstance(form, JsonResponse):
            return form
        form.is_valid()
        problems = [
            f"{form.fields[name].label}: {errors[0]}" if name in form.fields else str(errors[0])
            for name, errors in form.errors.items()
            if name != "name"  # a missing name does not stop a test
        ]
        if problems:
            return JsonResponse(
                {"ok": False, "message": problems[0], "details": problems[1:], "warnings": []}
            )
        result = KeepitProvider().test_connection(
            config=form.config_values(), secrets=form.effective_secrets()
        )
        return JsonResponse(result.as_json())

    @method_decorator(require_POST)
    @method_decorator(sensitive_post_parameters(*SECRET_POST_FIELDS))
    def find_region_view(self, request: HttpRequest, object_id: str | None = None) -> JsonResponse:
        """ "Find my region": the one place credentials are sent to other Keepit regions,
        and only because the admin pressed the button."""
        form = self._posted_form(request, object_id)
        if isinstance(form, JsonResponse):
            return form
        form.is_valid()  # what is filled in is enough: region and GUID may still be empty
        secrets = form.effective_secrets()
        config = {
            "username": str(form.cleaned_data.get("username", "")),
            "token_login": str(form.cleaned_data.get("token_login", "")),
        }
        result = KeepitProvider().find_region(config=config, secrets=secrets)
        return JsonResponse(result.as_json())

    @method_decorator(require_POST)
    def sync_now_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        connection = get_object_or_404(KeepitConnection, pk=object_id)
        if not request.user.has_perm("integrations.sync_connection"):
            raise PermissionDenied
        request_sync(connection)
        self.log_change(request, connection, "Started a sync (Sync now).")
        # The page that follows waits for a run newer than the latest one now (the worker
        # may start it before the page is even drawn).
        latest = (
            SyncRun.objects.filter(connection_id=connection.pk)
            .order_by("-started_at", "-id")
            .values_list("pk", flat=True)
            .first()
        )
        request.session["vectis_sync_requested"] = {"connection": connection.pk, "after": latest}
        messages.success(
            request,
            f"Sync of \u201c{connection.name}\u201d queued; the run appears below when it starts.",
        )
        return HttpResponseRedirect(
            reverse("admin:keepit_keepitconnection_change", args=[connection.pk])
        )

    def progress_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        """The latest run's phase and progress, polled by the connection page."""
        connection = get_object_or_404(KeepitConnection, pk=object_id)
        if not self.has_view_permission(request, connection):
            raise PermissionDenied
        response = JsonResponse(run_progress(connection.pk).as_json())
        response["Cache-Control"] = "no-store"
        return response

    def get_queryset(self, request: HttpRequest) -> QuerySet[KeepitConnection]:
        return super().get_queryset(request).order_by("name", "id")
