from __future__ import annotations

from django.contrib import admin

from .models import BackupAuditEvent, BackupConnector


@admin.register(BackupConnector)
class BackupConnectorAdmin(admin.ModelAdmin[BackupConnector]):
    list_display = ["name", "customer", "kind", "vendor_type", "last_seen_at", "removed_at"]
    list_filter = ["kind"]
    list_select_related = ["customer"]
    search_fields = ["name", "external_id", "customer__name"]

    def has_add_permission(self, request: object) -> bool:
        return False


@admin.register(BackupAuditEvent)
class BackupAuditEventAdmin(admin.ModelAdmin[BackupAuditEvent]):
    list_display = ["occurred_at", "customer", "category", "area", "message", "actor", "succeeded"]
    list_filter = ["category", "succeeded"]
    list_select_related = ["customer"]
    search_fields = ["message", "actor"]

    def has_add_permission(self, request: object) -> bool:
        return False
