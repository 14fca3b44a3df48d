"""Services of the integrations framework: which connections are due, enqueueing syncs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import Count, F, Q
from django.urls import reverse
from django.utils import timezone

from .base import Provider
from .models import Connection
from .registry import all_providers

logger = logging.getLogger(__name__)


def connections_due_for_sync(*, now: datetime) -> list[Connection]:
    """Enabled connections whose next sync time has come (or was never set)."""
    return list(
        Connection.objects.filter(enabled=True)
        .filter(Q(next_sync_at__isnull=True) | Q(next_sync_at__lte=now))
        .order_by("id")
    )


def enqueue_due_syncs(*, now: datetime | None = None) -> dict[str, Any]:
    """Enqueue one sync task per due connection; a slow one cannot hold up the others."""
    from .tasks import sync_connection

    now = now or timezone.now()
    due = connections_due_for_sync(now=now)
    for connection in due:
        transaction.on_commit(partial(sync_connection.delay, connection.pk, "schedule"))
    logger.info("Enqueued %d due connection sync(s)", len(due))
    return {"enqueued": [connection.pk for connection in due]}


@dataclass(frozen=True)
class ProviderCard:
    kind: str
    name: str
    mark: str
    description: str
    state: str  # Not configured / Enabled / Disabled / Failing
    summary: str
    configure_url: str
    can_configure: bool

    @property
    def badge_class(self) -> str:
        return {
            "Enabled": "vx-ok",
            "Failing": "vx-failed",
            "Disabled": "vx-unknown",
        }.get(self.state, "vx-onboarding")


def provider_cards(*, can_configure: Callable[[Provider], bool]) -> list[ProviderCard]:
    """One card per registered provider with its state, in one query."""
    failing = Q(last_error_at__isnull=False) & (
        Q(last_success_at__isnull=True) | Q(last_error_at__gt=F("last_success_at"))
    )
    rows = {
        row["provider"]: row
        for row in Connection.objects.values("provider").annotate(
            total=Count("id"),
            enabled_count=Count("id", filter=Q(enabled=True)),
            failing_count=Count("id", filter=Q(enabled=True) & failing),
        )
    }
    cards = []
    for provider in all_providers():
        row = rows.get(provider.kind, {"total": 0, "enabled_count": 0, "failing_count": 0})
        total, enabled, failing_count = row["total"], row["enabled_count"], row["failing_count"]
        if total == 0:
            state, summary = "Not configured", "No connection yet."
        elif failing_count:
            state = "Failing"
            summary = f"{failing_count} of {enabled} enabled connection(s) failing."
        elif enabled:
            state, summary = "Enabled", f"{enabled} of {total} connection(s) enabled."
        else:
            state, summary = "Disabled", f"{total} connection(s), none enabled."
        url = reverse(provider.admin_changelist if total else provider.admin_add)
        cards.append(
            ProviderCard(
                kind=provider.kind,
                name=provider.name,
                mark=provider.mark,
                description=provider.description,
                state=state,
                summary=summary,
                configure_url=url,
                can_configure=can_configure(provider),
            )
        )
    return cards
