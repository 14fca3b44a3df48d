"""The backup inventory in the admin: view only (the sync writes it; nobody edits it)."""

from __future__ import annotations

from django.contrib import admin

from integrations.admin import HistoryAdmin

from .models import BackupAuditEvent, BackupConnector, BackupConnectorStatus


@admin.register(BackupConnector)
class BackupConnectorAdmin(HistoryAdmin[BackupConnector]):
    list_display = ["name", "customer", "kind", "vendor_type", "last_seen_at", "removed_at"]
    list_filter = ["kind", "connection"]
    list_select_related = ["customer"]
    search_fields = ["name", "external_id", "customer__name"]


@admin.register(BackupConnectorStatus)
class BackupConnectorStatusAdmin(HistoryAdmin[BackupConnectorStatus]):
    list_display = [
        "connector",
        "status",
        "health",
        "reason",
        "reason_text",
        "last_success_at",
        "checked_at",
    ]
    list_filter = ["status", "health"]
    list_select_related = ["connector"]
    search_fields = ["connector__name", "reason", "reason_text"]


@admin.register(BackupAuditEvent)
class BackupAuditEventAdmin(HistoryAdmin[BackupAuditEvent]):
    list_display = ["occurred_at", "customer", "category", "area", "message", "actor", "succeeded"]
    list_filter = ["category", "succeeded", "is_own_read"]
    list_select_related = ["customer"]
    search_fields = ["message", "actor"]
    # Millions of rows: no full COUNT(*) for the "n total" link.
    show_full_result_count = False
