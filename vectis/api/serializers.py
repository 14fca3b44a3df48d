"""What each resource looks like. Times are ISO 8601 in UTC ("2026-11-26T12:00:00Z"),
whatever the MSP's time zone (views.InUtc makes every request UTC); ids are the database
ids, stable for a resource's life."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone
from rest_framework import serializers

from alerts.models import Alert
from backups.models import AuditCategory, BackupAuditEvent, BackupConnector, BackupStatus
from customers.models import Customer
from integrations.models import Connection, SyncRun

from ..pages.customer import RANK_STATUS

# How long one snooze may last through the API.
SNOOZE_AT_MOST_DAYS = 30


class CustomerSerializer(serializers.ModelSerializer[Any]):
    worst_status = serializers.SerializerMethodField(
        help_text="The worst backup status of its live connectors (null: none)."
    )
    connector_count = serializers.IntegerField(help_text="Live connectors.")
    open_alert_count = serializers.IntegerField(help_text="Alerts not yet resolved.")

    class Meta:
        model = Customer
        fields = ["id", "name", "worst_status", "connector_count", "open_alert_count", "created_at"]

    def get_worst_status(self, customer: Any) -> BackupStatus | None:
        return RANK_STATUS.get(customer.worst_rank)


class ConnectorSerializer(serializers.ModelSerializer[Any]):
    customer_name = serializers.CharField(source="customer.name", default=None, allow_null=True)
    status = serializers.ChoiceField(
        source="status_now", choices=BackupStatus.choices, help_text="The backup status."
    )
    status_reason = serializers.CharField(source="backup_status.reason_text", default="")
    last_backup_at = serializers.DateTimeField(source="backup_status.last_backup_at", default=None)
    last_success_at = serializers.DateTimeField(
        source="backup_status.last_success_at",
        default=None,
        help_text="The last complete backup.",
    )
    checked_at = serializers.DateTimeField(
        source="backup_status.checked_at", default=None, help_text="When the sync last read it."
    )

    class Meta:
        model = BackupConnector
        fields = [
            "id",
            "name",
            "kind",
            "customer",
            "customer_name",
            "connection",
            "external_id",
            "status",
            "status_reason",
            "last_backup_at",
            "last_success_at",
            "checked_at",
            "first_seen_at",
            "removed_at",
        ]


class AuditEventSerializer(serializers.ModelSerializer[Any]):
    class Meta:
        model = BackupAuditEvent
        fields = [
            "id",
            "occurred_at",
            "category",
            "area",
            "message",
            "actor",
            "succeeded",
            "connector",
            "is_own_read",
        ]


class AlertSerializer(serializers.ModelSerializer[Any]):
    customer = serializers.IntegerField(
        source="customer_id", allow_null=True, help_text="The customer it is about (if any)."
    )
    rule_name = serializers.CharField(source="rule.name", default=None, allow_null=True)
    snoozed = serializers.SerializerMethodField()

    class Meta:
        model = Alert
        fields = [
            "id",
            "kind",
            "state",
            "summary",
            "detail",
            "rule",
            "rule_name",
            "customer",
            "connector",
            "connection",
            "opened_at",
            "last_seen_at",
            "resolved_at",
            "acknowledged_at",
            "acknowledged_by",
            "acknowledge_note",
            "snoozed",
            "snoozed_until",
            "snoozed_by",
            "snooze_reason",
            "escalated_at",
        ]

    def get_snoozed(self, alert: Alert) -> bool:
        return alert.is_snoozed(timezone.now())


class SyncRunSerializer(serializers.ModelSerializer[Any]):
    class Meta:
        model = SyncRun
        fields = [
            "id",
            "connection",
            "trigger",
            "outcome",
            "started_at",
            "finished_at",
            "counts",
            "http_requests",
            "error",
            "failed_accounts",
            "notes",
        ]


class ConnectionSerializer(serializers.ModelSerializer[Any]):
    """A connection to a backup vendor — never its credentials or settings."""

    class Meta:
        model = Connection
        fields = [
            "id",
            "provider",
            "name",
            "enabled",
            "next_sync_at",
            "last_sync_started_at",
            "last_success_at",
            "last_error",
            "last_error_at",
            "credential_kind",
            "credential_expires_at",
        ]


class AcknowledgeSerializer(serializers.Serializer[Any]):
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class SnoozeSerializer(serializers.Serializer[Any]):
    until = serializers.DateTimeField(
        help_text="ISO 8601 with an offset, e.g. 2026-12-07T09:00:00Z."
    )
    reason = serializers.CharField(max_length=2000)

    def validate_until(self, value: datetime) -> datetime:
        now = timezone.now()
        if value <= now:
            raise serializers.ValidationError("Choose a time in the future.")
        if (value - now).days >= SNOOZE_AT_MOST_DAYS:
            raise serializers.ValidationError(
                f"Snooze for less than {SNOOZE_AT_MOST_DAYS} days; acknowledge it instead."
            )
        return value


class ActionResultSerializer(serializers.Serializer[Any]):
    message = serializers.CharField()


class AlertActionSerializer(serializers.Serializer[Any]):
    message = serializers.CharField()
    alert = AlertSerializer()


class ErrorDetailSerializer(serializers.Serializer[Any]):
    status = serializers.IntegerField()
    code = serializers.CharField()
    message = serializers.CharField(help_text="What went wrong, in a sentence.")
    field_errors = serializers.DictField(
        required=False, help_text="What is wrong with each value, when values are wrong."
    )


class ErrorSerializer(serializers.Serializer[Any]):
    error = ErrorDetailSerializer()


class AuditEventQuery(serializers.Serializer[Any]):
    category = serializers.ChoiceField(choices=AuditCategory.choices, required=False)
    include_own_reads = serializers.BooleanField(
        default=False, help_text="Also Vectis's own reads of the vendor's API (hidden by default)."
    )
    since = serializers.DateTimeField(required=False, help_text="At or after (ISO 8601).")
    until = serializers.DateTimeField(required=False, help_text="Before (ISO 8601).")
