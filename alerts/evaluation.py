"""Which connectors are in an alert condition right now: one query per rule, whatever
the size of the fleet. Pure reads; alerts/services.py applies the changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery

from backups.models import (
    AccountLink,
    AuditCategory,
    BackupAuditEvent,
    BackupConnector,
    BackupStatus,
)
from integrations.models import Connection
from integrations.registry import provider_label
from integrations.services import degraded_filter

from .models import Alert, AlertRule

# The built-in check: no successful sync for this long (three missed 15-minute runs).
SYNC_STALE_AFTER = timedelta(hours=1)
FAILURE_CATEGORIES = (AuditCategory.RECOVERY, AuditCategory.CONNECTOR)


@dataclass(frozen=True)
class Condition:
    """One alert condition: its key and what opening it should say."""

    key: str
    kind: str
    summary: str
    reason: str = ""
    connector_id: int | None = None
    connection_id: int | None = None
    # Why, in words (kept on the alert and carried by every message about it).
    detail: str = ""


def rule_key(rule: AlertRule, connector_id: int) -> str:
    return f"{rule.pk}:{connector_id}"


def sync_key(connection_id: int) -> str:
    return f"sync:{connection_id}"


def degraded_key(connection_id: int) -> str:
    return f"degraded:{connection_id}"


def _utc(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _scoped_connectors(rule: AlertRule) -> QuerySet[BackupConnector]:
    # Removed connectors, connectors the vendor is deleting and connectors of excluded
    # accounts never alert.
    connectors = BackupConnector.objects.filter(
        removed_at__isnull=True, deletion_scheduled_at__isnull=True
    ).exclude(account_link__state=AccountLink.State.EXCLUDED)
    if rule.connector_kinds:
        connectors = connectors.filter(kind__in=rule.connector_kinds)
    # A subquery, not a Python list: the scope costs no extra round trip.
    scoped_customers = AlertRule.customers.through.objects.filter(alertrule_id=rule.pk)
    connectors = connectors.filter(
        Q(~Exists(scoped_customers)) | Q(customer_id__in=scoped_customers.values("customer_id"))
    )
    return connectors


def stale_conditions(rule: AlertRule, *, now: datetime) -> list[Condition]:
    """No complete backup within the threshold; never-completed connectors only after
    the onboarding grace from when they were first seen."""
    stale_before = now - timedelta(hours=rule.threshold_hours)
    grace_before = now - timedelta(hours=rule.onboarding_grace_hours)
    rows = (
        _scoped_connectors(rule)
        .filter(
            Q(backup_status__last_success_at__lt=stale_before)
            | Q(backup_status__last_success_at__isnull=True, first_seen_at__lt=grace_before)
        )
        .values_list(
            "pk", "name", "customer__name", "backup_status__last_success_at", "first_seen_at"
        )
    )
    conditions = []
    for pk, name, customer, last_success, first_seen in rows:
        if last_success is None:
            what = "no complete backup since it was added"
            detail = (
                f"No complete backup since the connector was added ({_utc(first_seen)}); "
                f"new connectors get {rule.onboarding_grace_hours} h to finish their first."
            )
        else:
            hours = int((now - last_success).total_seconds() // 3600)
            what = f"no complete backup for {hours} hours"
            detail = (
                f"No complete backup since {_utc(last_success)} "
                f"(the rule allows {rule.threshold_hours} h)."
            )
        subject = f"{customer}: {name}" if customer else name
        conditions.append(
            Condition(
                key=rule_key(rule, pk),
                kind=Alert.Kind.BACKUP_STALE,
                summary=f"{subject} — {what}"[:255],
                connector_id=pk,
                detail=detail,
            )
        )
    return conditions


def failed_conditions(rule: AlertRule, *, now: datetime) -> list[Condition]:
    """A recovery/connector failure in the audit log inside the lookback, or (option)
    a failed status whose reason means a failure."""
    failures = BackupAuditEvent.objects.filter(
        connector_id=OuterRef("pk"),
        succeeded=False,
        category__in=FAILURE_CATEGORIES,
        occurred_at__gte=now - timedelta(hours=rule.lookback_hours),
        occurred_at__lte=now,
    )
    latest = failures.order_by("-occurred_at", "-id")
    condition = Q(Exists(failures))
    if rule.include_failed_status:
        condition |= Q(
            backup_status__status=BackupStatus.FAILED, backup_status__reason_is_failure=True
        )
    rows = (
        _scoped_connectors(rule)
        .annotate(
            failure_message=Subquery(latest.values("message")[:1]),
            failure_at=Subquery(latest.values("occurred_at")[:1]),
        )
        .filter(condition)
        .values_list(
            "pk",
            "name",
            "customer__name",
            "connection__provider",
            "failure_message",
            "failure_at",
            "backup_status__reason",
            "backup_status__reason_text",
            "backup_status__status",
            "backup_status__reason_is_failure",
        )
    )
    conditions = []
    for row in rows:
        pk, name, customer, provider, message, failed_at, reason, reason_text, status, needs = row
        vendor = provider_label(provider)
        subject = f"{customer}: {name}" if customer else name
        reasons = []
        if failed_at is not None:
            reasons.append(
                f"Failed in the {vendor} audit log at {_utc(failed_at)}: \u201c{message}\u201d."
            )
        if rule.include_failed_status and status == BackupStatus.FAILED and needs:
            reasons.append(f"{vendor} says: {reason_text or reason}.")
        what = f"a failure in the {vendor} audit log" if failed_at else (reason_text or reason)
        conditions.append(
            Condition(
                key=rule_key(rule, pk),
                kind=Alert.Kind.BACKUP_FAILED,
                summary=f"{subject} — {what}"[:255],
                reason=reason or "",
                connector_id=pk,
                detail=" ".join(reasons),
            )
        )
    return conditions


def sync_stale_conditions(*, now: datetime) -> list[Condition]:
    """Enabled connections without a successful sync for an hour: the monitor watching
    itself (a dead worker or an expired token must not silence every other alert)."""
    cutoff = now - SYNC_STALE_AFTER
    rows = Connection.objects.filter(enabled=True).filter(
        Q(last_success_at__lt=cutoff) | Q(last_success_at__isnull=True, created_at__lt=cutoff)
    )
    conditions = []
    for connection in rows:
        since = (
            f"since {_utc(connection.last_success_at)}" if connection.last_success_at else "ever"
        )
        conditions.append(
            Condition(
                key=sync_key(connection.pk),
                kind=Alert.Kind.SYNC_STALE,
                summary=f"{connection.name}: no successful sync {since}"[:255],
                connection_id=connection.pk,
                detail=connection.last_error,
            )
        )
    return conditions


def sync_degraded_conditions(*, now: datetime) -> list[Condition]:
    """Enabled connections whose last runs were all partial: each run "succeeded", so
    the sync never goes stale, yet some accounts have not been read for hours."""
    runs = settings.VECTIS_DEGRADED_AFTER_PARTIAL_RUNS
    conditions = []
    for connection in Connection.objects.filter(degraded_filter(), enabled=True):
        conditions.append(
            Condition(
                key=degraded_key(connection.pk),
                kind=Alert.Kind.SYNC_DEGRADED,
                summary=(
                    f"{connection.name}: the last {connection.partial_runs_in_row} syncs could "
                    "not read everything"
                )[:255],
                connection_id=connection.pk,
                detail=(
                    f"{runs} or more syncs in a row ended partial. Latest: {connection.last_error}"
                ).strip(),
            )
        )
    return conditions


def rule_conditions(rule: AlertRule, *, now: datetime) -> list[Condition]:
    if rule.kind == AlertRule.Kind.BACKUP_STALE:
        return stale_conditions(rule, now=now)
    return failed_conditions(rule, now=now)
