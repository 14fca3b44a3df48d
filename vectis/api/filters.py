"""What each list can be filtered and ordered by (django-filter; the schema lists every
parameter and every `ordering` value; an unknown value is a 400 with a sentence)."""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.db.models import Q, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from alerts.models import Alert
from backups.models import AccountLink, BackupConnector, BackupStatus
from customers.models import Customer
from integrations.models import Connection, SyncRun

from ..pages.customer import in_worst_status


@extend_schema_field(OpenApiTypes.INT)
class IdFilter(django_filters.NumberFilter):
    """An id: a whole number (42.5 is refused, not cut to 42)."""

    field_class = forms.IntegerField


class Ordering(django_filters.OrderingFilter):
    """`ordering=name` or `ordering=-name`; several separated by commas."""

    def __init__(self, *fields: tuple[str, str], **kwargs: Any) -> None:
        super().__init__(fields=fields, **kwargs)


class CustomerFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains", help_text="Part of the name.")
    worst_status = django_filters.ChoiceFilter(
        choices=BackupStatus.choices, method="by_worst", help_text="Its worst backup status."
    )
    ordering = Ordering(
        ("name", "name"),
        ("id", "id"),
        ("worst_rank", "worst_status"),  # worst_status: failed first; -worst_status: ok first
        ("open_alert_count", "open_alert_count"),
    )

    class Meta:
        model = Customer
        fields = ["name", "worst_status"]

    def by_worst(self, queryset: QuerySet[Customer], name: str, value: str) -> QuerySet[Customer]:
        return in_worst_status(queryset, BackupStatus(value))


class ConnectorFilter(django_filters.FilterSet):
    customer = IdFilter(help_text="A customer's id.")
    connection = IdFilter(help_text="A connection's id.")
    kind = django_filters.CharFilter(help_text="e.g. m365, entra, google, salesforce.")
    # distinct=False: one row per connector already (DISTINCT made every page sort twice).
    status = django_filters.MultipleChoiceFilter(
        field_name="status_now",
        choices=BackupStatus.choices,
        distinct=False,
        help_text="Backup status; repeat for several (status=failed&status=warning).",
    )
    ordering = Ordering(
        ("severity", "status"),  # status: failed first
        ("name", "name"),
        ("id", "id"),
        ("backup_status__last_success_at", "last_success_at"),
    )

    class Meta:
        model = BackupConnector
        fields = ["customer", "connection", "kind", "status"]


class AlertFilter(django_filters.FilterSet):
    state = django_filters.MultipleChoiceFilter(
        choices=Alert.State.choices,
        distinct=False,
        help_text="Repeat for several (state=open&state=acknowledged).",
    )
    kind = django_filters.ChoiceFilter(choices=Alert.Kind.choices)
    rule = IdFilter(help_text="An alert rule's id.")
    customer = IdFilter(
        method="by_customer",
        help_text="A customer's id: alerts about its connectors and its vendor accounts.",
    )
    connector = IdFilter(help_text="A connector's id.")
    changed_since = django_filters.IsoDateTimeFilter(
        field_name="last_seen_at",
        lookup_expr="gte",
        help_text="Opened, resolved or changed at or after this time (ISO 8601; UTC without "
        "an offset): poll with the time of your last poll.",
    )
    ordering = Ordering(
        ("opened_at", "opened_at"),
        ("last_seen_at", "last_changed_at"),
        ("resolved_at", "resolved_at"),
        ("id", "id"),
    )

    class Meta:
        model = Alert
        fields = ["state", "kind", "rule", "customer", "connector", "changed_since"]

    def by_customer(self, queryset: QuerySet[Alert], name: str, value: int) -> QuerySet[Alert]:
        """The alerts the `customer` field names: about its connectors, or (without a
        connector) about its vendor accounts. Two indexed IN lists, not the computed
        field (which no index serves)."""
        connectors = BackupConnector.objects.filter(customer_id=value).values("pk")
        accounts = AccountLink.objects.filter(customer_id=value).values("pk")
        return queryset.filter(
            Q(connector_id__in=connectors) | Q(connector__isnull=True, account_link_id__in=accounts)
        )


class SyncRunFilter(django_filters.FilterSet):
    connection = IdFilter(help_text="A connection's id.")
    outcome = django_filters.ChoiceFilter(choices=SyncRun.Outcome.choices)
    trigger = django_filters.ChoiceFilter(choices=SyncRun.Trigger.choices)
    since = django_filters.IsoDateTimeFilter(
        field_name="started_at",
        lookup_expr="gte",
        help_text="Started at or after this time (ISO 8601; UTC without an offset).",
    )
    ordering = Ordering(("started_at", "started_at"), ("id", "id"))

    class Meta:
        model = SyncRun
        fields = ["connection", "outcome", "trigger", "since"]


class ConnectionFilter(django_filters.FilterSet):
    ordering = Ordering(("name", "name"), ("id", "id"))

    class Meta:
        model = Connection
        fields: list[str] = []
