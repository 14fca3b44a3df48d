"""Admin of the integrations framework: sync runs (history, view only), and the
read-only base every history admin shares."""

from __future__ import annotations

from typing import Any, TypeVar

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest

from .models import SyncChunk, SyncRun

M = TypeVar("M", bound=Model)


class HistoryAdmin(admin.ModelAdmin[M]):
    """History is read-only: rows can be looked at, never added, edited or deleted in
    the admin, by anyone (superusers included). What the sync and the alerts record is
    the evidence an MSP shows its customers."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


PART_FIELDS = (
    "__str__",
    "state",
    "attempts",
    "worker",
    "started_at",
    "finished_at",
    "http_requests",
    "error",
)


class SyncChunkInline(admin.TabularInline[SyncChunk, SyncRun]):
    """The parts of a run: which worker did each, how it ended (read-only, like the run)."""

    model = SyncChunk
    extra = 0
    can_delete = False
    fields = PART_FIELDS
    readonly_fields = PART_FIELDS
    verbose_name = "part"
    verbose_name_plural = "parts (each a Celery task; the last to end finishes the run)"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(SyncRun)
class SyncRunAdmin(HistoryAdmin[SyncRun]):
    inlines = [SyncChunkInline]
    list_display = [
        "connection",
        "trigger",
        "outcome",
        "started_at",
        "finished_at",
        "http_requests",
        "error",
    ]
    list_filter = ["outcome", "trigger", "connection"]
    list_select_related = ["connection"]
    date_hierarchy = "started_at"
