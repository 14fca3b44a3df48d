"""The API's endpoints: thin views over the same selectors and services as the pages.
Every list answers in a fixed number of queries whatever its page size (select_related
and subqueries, never a query per row). Every request runs in UTC: times read without
an offset are UTC, and times in sentences are too."""

from __future__ import annotations

import logging
from datetime import UTC
from typing import Any

from django.db.models import IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from alerts import lifecycle
from alerts.models import Alert
from backups.models import AccountLink, BackupConnector
from backups.selectors import (
    connector_health_list,
    customer_timeline,
    effective_status,
    severity,
)
from backups.services import request_sync
from customers.models import Customer
from integrations.lifecycle import live_sync_run
from integrations.models import Connection, SyncRun

from ..pages.customer import customers_with_health
from ..timefmt import iso
from . import filters
from . import serializers as s
from .errors import Conflict
from .pagination import EventCursor

logger = logging.getLogger(__name__)
CONFLICT = {409: s.ErrorSerializer}


class InUtc:
    """Activates UTC for the request (the pages use each viewer's zone)."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        timezone.activate(UTC)
        super().initial(request, *args, **kwargs)  # type: ignore[misc]

    def finalize_response(
        self, request: HttpRequest, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        timezone.deactivate()
        return super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc,no-any-return]


def _actor(request: Request) -> str:
    return str(request.user.username)  # the key's "API key “name”" (auth.KeyUser)


@extend_schema_view(
    list=extend_schema(summary="Customers, with their worst backup status and open alerts"),
    retrieve=extend_schema(summary="One customer"),
)
class CustomerViewSet(InUtc, viewsets.ReadOnlyModelViewSet[Customer]):
    serializer_class = s.CustomerSerializer
    filterset_class = filters.CustomerFilter

    def get_queryset(self) -> QuerySet[Customer]:
        return customers_with_health(Customer.objects.all()).order_by("name", "id")

    @extend_schema(
        summary="A customer's audit events (newest first)",
        parameters=[s.AuditEventQuery],
        responses=s.AuditEventSerializer(many=True),
    )
    @action(detail=True, url_path="audit-events", pagination_class=EventCursor, filter_backends=[])
    def audit_events(self, request: Request, pk: str | None = None) -> Response:
        customer = get_object_or_404(Customer.objects.only("pk"), pk=pk)
        query = s.AuditEventQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        wanted = query.validated_data
        # The customer page's timeline: Vectis's own reads left out unless asked for.
        events = customer_timeline(
            customer.pk,
            categories=[wanted["category"]] if wanted.get("category") else None,
            include_own_reads=wanted["include_own_reads"],
        ).select_related(None)
        if wanted.get("since"):
            events = events.filter(occurred_at__gte=wanted["since"])
        if wanted.get("until"):
            events = events.filter(occurred_at__lt=wanted["until"])
        pages = EventCursor()
        page = pages.paginate_queryset(events, request, view=self)
        return pages.get_paginated_response(s.AuditEventSerializer(page, many=True).data)


@extend_schema_view(
    list=extend_schema(
        summary="Live connectors with their backup status (worst first)",
        description="Connectors the vendor still reports, of monitored accounts.",
    ),
    retrieve=extend_schema(summary="One connector (removed ones too: see removed_at)"),
)
class ConnectorViewSet(InUtc, viewsets.ReadOnlyModelViewSet[BackupConnector]):
    serializer_class = s.ConnectorSerializer
    filterset_class = filters.ConnectorFilter

    def get_queryset(self) -> QuerySet[BackupConnector]:
        if self.action != "retrieve":
            # The dashboard's list: live connectors, worst and oldest success first.
            return connector_health_list()
        # Alerts and audit events name connectors since removed: their page still answers.
        return (
            BackupConnector.objects.select_related("customer", "backup_status")
            .annotate(status_now=effective_status())
            .annotate(severity=severity())
        )


@extend_schema_view(
    list=extend_schema(summary="Alerts (newest first)"),
    retrieve=extend_schema(summary="One alert"),
)
class AlertViewSet(InUtc, viewsets.ReadOnlyModelViewSet[Alert]):
    serializer_class = s.AlertSerializer
    filterset_class = filters.AlertFilter

    def get_queryset(self) -> QuerySet[Alert]:
        # As subqueries: computed for the page's rows only, after the sort (joins would
        # join every alert before it: 100 ms more at 95,000 open alerts).
        customer = Coalesce(
            Subquery(
                BackupConnector.objects.filter(pk=OuterRef("connector_id")).values("customer_id")
            ),
            Subquery(
                AccountLink.objects.filter(pk=OuterRef("account_link_id")).values("customer_id")
            ),
            output_field=IntegerField(),
        )
        return (
            Alert.objects.select_related("rule")
            .annotate(customer_id=customer)
            .order_by("-opened_at", "-id")
        )

    def _done(self, alert: Alert, sentence: str) -> Response:
        alert = self.get_queryset().get(pk=alert.pk)
        return Response({"message": sentence, "alert": s.AlertSerializer(alert).data})

    @extend_schema(
        summary="Acknowledge an alert (no more reminders); acknowledging again changes nothing",
        request=s.AcknowledgeSerializer,
        responses={200: s.AlertActionSerializer, **CONFLICT},
    )
    @action(detail=True, methods=["post"])
    def acknowledge(self, request: Request, pk: str | None = None) -> Response:
        alert = self.get_object()
        form = s.AcknowledgeSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        if alert.state == Alert.State.ACKNOWLEDGED:  # a retry: the same answer, no change
            return self._done(alert, f"Already acknowledged by {alert.acknowledged_by}.")
        by = _actor(request)
        now = timezone.now()
        if not lifecycle.acknowledge([alert.pk], by=by, note=form.validated_data["note"], now=now):
            raise Conflict(f"Alert {alert.pk} is resolved: there is nothing to acknowledge.")
        return self._done(alert, f"Acknowledged by {by}.")

    @extend_schema(
        summary="Snooze an unresolved alert until a time (less than 30 days), with a reason",
        request=s.SnoozeSerializer,
        responses={200: s.AlertActionSerializer, **CONFLICT},
    )
    @action(detail=True, methods=["post"])
    def snooze(self, request: Request, pk: str | None = None) -> Response:
        alert = self.get_object()
        form = s.SnoozeSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        until = form.validated_data["until"]
        changed = lifecycle.snooze(
            [alert.pk],
            until=until,
            reason=form.validated_data["reason"],
            by=_actor(request),
            now=timezone.now(),
        )
        if not changed:
            raise Conflict(f"Alert {alert.pk} is resolved: there is nothing to snooze.")
        return self._done(alert, f"Snoozed until {iso(until)}.")

    @extend_schema(
        summary="End an alert's snooze",
        request=None,
        responses={200: s.AlertActionSerializer, **CONFLICT},
    )
    @action(detail=True, methods=["post"])
    def unsnooze(self, request: Request, pk: str | None = None) -> Response:
        alert = self.get_object()
        if not lifecycle.unsnooze([alert.pk], by=_actor(request), now=timezone.now()):
            raise Conflict(f"Alert {alert.pk} is not snoozed.")
        return self._done(alert, "The snooze is over: reminders resume.")


@extend_schema_view(
    list=extend_schema(summary="Sync runs (newest first)"),
    retrieve=extend_schema(summary="One sync run"),
)
class SyncRunViewSet(InUtc, viewsets.ReadOnlyModelViewSet[SyncRun]):
    serializer_class = s.SyncRunSerializer
    filterset_class = filters.SyncRunFilter
    queryset = SyncRun.objects.order_by("-started_at", "-id")


@extend_schema_view(
    list=extend_schema(summary="Connections to backup vendors (never their credentials)"),
    retrieve=extend_schema(summary="One connection"),
)
class ConnectionViewSet(InUtc, viewsets.ReadOnlyModelViewSet[Connection]):
    serializer_class = s.ConnectionSerializer
    filterset_class = filters.ConnectionFilter
    queryset = Connection.objects.order_by("name", "id")

    @extend_schema(
        summary="Request a sync of the connection now (it reads the vendor; writes nothing there)",
        request=None,
        responses={202: s.ActionResultSerializer, **CONFLICT},
    )
    @action(detail=True, methods=["post"])
    def sync(self, request: Request, pk: str | None = None) -> Response:
        connection = self.get_object()
        if not connection.enabled:
            raise Conflict(f"The connection “{connection.name}” is disabled: enable it first.")
        running = live_sync_run(connection, now=timezone.now())
        if running is not None:
            raise Conflict(
                f"A sync of “{connection.name}” is running (run {running.pk}, started "
                f"{iso(running.started_at)}): see /api/v1/sync-runs/{running.pk}/."
            )
        request_sync(connection)
        logger.info("Sync of connection %s requested by %s", connection.pk, _actor(request))
        return Response(
            {
                "message": f"Sync of “{connection.name}” queued; its run appears at "
                f"/api/v1/sync-runs/?connection={connection.pk}."
            },
            status=status.HTTP_202_ACCEPTED,
        )
