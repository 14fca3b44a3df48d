"""One alert per root cause. When a connection cannot sync (its sync is stale or
Degraded) or every connector of an account fails for one reason, that alert — the
parent — explains the per-connector alerts under it: they are linked to it (`parent`)
and their messages wait while it is open. Nothing is ever left unevaluated: children
open and resolve as usual; only their messages wait.

When the parent resolves, a child that is still open was not explained by it and is
told then ("it outlived its parent"); a child that ended before (or with) its parent is
closed quietly — its story was the parent's. An alert already told before its parent
opened is never linked: its recipients heard of it, so they hear of its resolution.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Exists, F, OuterRef, Q

from .models import Alert, AlertEvent

# Alerts about a whole connection: its connectors' alerts wait behind them.
CONNECTION_KINDS = (Alert.Kind.SYNC_STALE, Alert.Kind.SYNC_DEGRADED)
QUIET_NOTE = "Explained by its parent alert (one alert per root cause); not told on its own."


def link_children() -> int:
    """Give open alerts without a parent the open parent that explains them; returns how
    many were linked. One UPDATE per parent (there are few)."""
    linked = 0
    # An alert whose opening was already told lives on its own: holding it now would
    # swallow the resolution its recipients wait for.
    told_openings = AlertEvent.objects.filter(
        alert=OuterRef("pk"), kind=AlertEvent.Kind.OPENED, notified_at__isnull=False
    )
    parents = Alert.objects.filter(resolved_at__isnull=True).filter(
        Q(kind__in=CONNECTION_KINDS) | Q(kind=Alert.Kind.ACCOUNT_FAILING)
    )
    for parent in parents.only("pk", "kind", "connection_id", "account_link_id"):
        orphans = (
            Alert.objects.filter(
                resolved_at__isnull=True, parent__isnull=True, connector__isnull=False
            )
            .exclude(pk=parent.pk)
            .exclude(Exists(told_openings))
        )
        if parent.kind == Alert.Kind.ACCOUNT_FAILING:
            orphans = orphans.filter(connector__account_link_id=parent.account_link_id)
        else:
            orphans = orphans.filter(connector__connection_id=parent.connection_id or 0)
        linked += orphans.update(parent=parent)
    return linked


def waiting_behind_parent() -> Q:
    """Alerts whose messages wait: their parent is still open."""
    return Q(parent__isnull=False, parent__resolved_at__isnull=True)


def close_explained(now: datetime) -> int:
    """Untold entries of children that ended before (or with) their parent: told
    quietly (marked, with a note, never sent)."""
    return AlertEvent.objects.filter(
        notified_at__isnull=True,
        alert__parent__isnull=False,
        alert__resolved_at__isnull=False,
        alert__parent__resolved_at__isnull=False,
        alert__resolved_at__lte=F("alert__parent__resolved_at"),
    ).update(notified_at=now, note=QUIET_NOTE)
