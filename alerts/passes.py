"""Which connectors a rule's evaluation pass looks at: every one (a full pass), or only
those whose data changed since the rule's last pass plus those a time threshold crossed
since then (an incremental pass).

A connector rule's condition depends on the connector's own rows (its job days, status,
failure events, fields, account and customer) and on the time. Writes to those rows are
captured by PostgreSQL triggers in the writers' own transactions (alerts.models.
ConnectorChange, migrations alerts 0012-0014); each pass takes them all. What the time
alone changes is asked per rule kind (`_crossed`): a backup growing older than the stale
threshold, a failure leaving the lookback, a new day moving the success-rate window.
At 80,000 connectors a full pass of the three connector rules reads the whole fleet
(about 600 ms of SQL and Python); an incremental pass reads what changed.

The connectors not looked at keep their alerts as they are: an open alert still holds,
and a connector without one still does not alert, because nothing it depends on moved.

A full pass runs: on a rule's first pass; when the rule changed since (its fields or
customers) or what its words use did (the time zone, the vendors' names, the release:
`fingerprint`); when the clock went back; when the connectors to look at are more than
a sixth of the fleet and 1,000 (a full pass then costs less); every hour (the safety net for
writes no trigger sees); and always where nothing captures changes (SQLite: the demo).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Q

from backups.jobs import HISTORY_DAYS
from backups.models import BackupAuditEvent, BackupConnector, BackupConnectorStatus, BackupJobDay
from integrations.registry import provider_label

from .evaluation import FAILURE_CATEGORIES
from .models import AlertRule, ConnectorChange, RulePass

FULL_PASS_EVERY = timedelta(hours=1)
# Beyond this share of the fleet to look at, a full pass costs less (at 80,000 connectors
# a pass looking at 8,000 took 670 ms, at 20,000 1,150 ms, a full pass 945 ms); below
# this many, whatever the share, either costs little.
MOST_OF_THE_FLEET = 1 / 6
FEW_CONNECTORS = 1_000
# The rule kinds evaluated incrementally (the others always read the whole fleet).
INCREMENTAL_KINDS = (
    AlertRule.Kind.BACKUP_STALE,
    AlertRule.Kind.BACKUP_FAILED,
    AlertRule.Kind.SUCCESS_RATE,
)
# Fields a rule decides by (its connector kinds and customers are added, sorted): a
# change means a full pass.
_DECIDING = (
    "kind",
    "enabled",
    "threshold_hours",
    "onboarding_grace_hours",
    "lookback_hours",
    "include_failed_status",
    "include_failed_jobs",
    "success_rate_days",
    "success_rate_percent",
)


def take_changes() -> set[int] | None:
    """The connectors written since the last pass, taken (each change comes back to one
    pass; a pass rolled back leaves them for the next). None where no trigger captures
    changes (SQLite)."""
    if connection.vendor != "postgresql":
        return None
    table = connection.ops.quote_name(ConnectorChange._meta.db_table)
    with connection.cursor() as cursor:
        # Each connector once, however many marks it has: after a day without passes
        # (millions of marks), what comes back is still at most the fleet. The table name
        # is the model's own, quoted: nothing from outside.
        cursor.execute(
            f"WITH taken AS (DELETE FROM {table} RETURNING connector_id) "  # noqa: S608
            "SELECT DISTINCT connector_id FROM taken"
        )
        return {row[0] for row in cursor.fetchall()}


def fingerprint(rule: AlertRule, customer_ids: Collection[int]) -> str:
    """What the rule's alerts depend on besides the data: its fields, its customers, and
    the settings its words use (the time zone, the vendors' names): a change to any of
    them (an edit, a deploy) means a full pass."""
    decided: dict[str, object] = {field: getattr(rule, field) for field in _DECIDING}
    decided["connector_kinds"] = sorted(rule.connector_kinds)
    decided["customers"] = sorted(customer_ids)
    decided["time_zone"] = settings.TIME_ZONE
    decided["vendors"] = sorted((kind, provider_label(kind)) for kind in settings.VECTIS_PROVIDERS)
    # A release may word its alerts differently.
    decided["release"] = settings.VECTIS_VERSION
    return hashlib.sha256(json.dumps(decided, sort_keys=True).encode()).hexdigest()


def connectors_to_evaluate(
    rule: AlertRule,
    last: RulePass | None,
    *,
    now: datetime,
    changes: set[int] | None,
    fingerprint: str,
    fleet: Callable[[], int],
) -> set[int] | None:
    """The connectors this pass of `rule` evaluates; None: every connector. `fleet`: how
    many connectors there are (counted only when the connectors to look at are many)."""
    if (
        rule.kind not in INCREMENTAL_KINDS
        or changes is None
        or last is None
        or last.fingerprint != fingerprint
        or now < last.evaluated_at
        or now - last.full_at >= FULL_PASS_EVERY
    ):
        return None
    crossed = _crossed(rule, since=last.evaluated_at, now=now)
    if crossed is None:
        return None
    chosen = changes | crossed
    if len(chosen) > FEW_CONNECTORS and len(chosen) > fleet() * MOST_OF_THE_FLEET:
        return None
    return chosen


def _crossed(rule: AlertRule, *, since: datetime, now: datetime) -> set[int] | None:
    """The connectors whose condition the time alone may have changed between two
    passes (a superset is fine); None when that is most of them (a full pass)."""
    if rule.kind == AlertRule.Kind.SUCCESS_RATE:
        # The window is whole days up to today: a new day moves it for everyone.
        return set() if since.astimezone(now.tzinfo).date() == now.date() else None
    if rule.kind == AlertRule.Kind.BACKUP_STALE:
        # A last complete backup that grew older than the threshold meanwhile; a
        # connector never backed up whose onboarding grace ran out meanwhile.
        threshold = timedelta(hours=rule.threshold_hours)
        grace = timedelta(hours=rule.onboarding_grace_hours)
        aged = BackupConnectorStatus.objects.filter(
            last_success_at__gte=since - threshold, last_success_at__lt=now - threshold
        ).values_list("connector_id", flat=True)
        onboarded = BackupConnector.objects.filter(
            first_seen_at__gte=since - grace, first_seen_at__lt=now - grace
        ).values_list("pk", flat=True)
        return {*aged, *onboarded}
    if rule.kind == AlertRule.Kind.BACKUP_FAILED:
        # Failures that left the lookback meanwhile (and failed jobs that left the days
        # kept, which hold an open alert until then), and failures stamped in the future
        # when they were written that are due now (clock skew).
        lookback = timedelta(hours=rule.lookback_hours)
        kept = timedelta(days=HISTORY_DAYS)

        def moved(field: str, *ages: timedelta) -> Q:
            crossed = Q(**{f"{field}__gt": since, f"{field}__lte": now})
            for age in ages:
                crossed |= Q(**{f"{field}__gte": since - age, f"{field}__lt": now - age})
            return crossed

        events = BackupAuditEvent.objects.filter(
            moved("occurred_at", lookback),
            succeeded=False,
            category__in=FAILURE_CATEGORIES,
            connector_id__isnull=False,
        ).values_list("connector_id", flat=True)
        jobs = BackupJobDay.objects.filter(moved("last_failure_at", lookback, kept)).values_list(
            "connector_id", flat=True
        )
        return {*events, *jobs}
    return None


def done(
    rule: AlertRule, last: RulePass | None, *, now: datetime, full: bool, fingerprint: str
) -> RulePass:
    """The rule's pass state after this pass (saved by `save`, all rules at once)."""
    return RulePass(
        rule=rule,
        evaluated_at=now,
        full_at=now if full or last is None else last.full_at,
        fingerprint=fingerprint,
    )


def save(passes: list[RulePass]) -> None:
    RulePass.objects.bulk_create(
        passes,
        update_conflicts=True,
        unique_fields=["rule"],
        update_fields=["evaluated_at", "full_at", "fingerprint"],
    )
