from __future__ import annotations

from django.contrib import admin

from .models import SyncRun


@admin.register(SyncRun)
class SyncRunAdmin(admin.ModelAdmin[SyncRun]):
    list_display = [
        "connection",
        "trigger",
        "outcome",
        "started_at",
        "finished_at",
        "http_requests",
    ]
    list_filter = ["outcome", "trigger"]
    list_select_related = ["connection"]

    def has_add_permission(self, request: object) -> bool:
        return False
