"""Which connectors are in an alert condition right now: one query per rule, whatever
the size of the fleet. Pure reads; alerts/services.py applies the changes."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.conf import settings
from django.db.models import Count, Exists, F, Min, Q, QuerySet, Sum

from backups.jobs import HISTORY_DAYS, format_rate, success_rate
from backups.models import (
    AccountLink,
    AccountSeat,
    AuditCategory,
    BackupAuditEvent,
    BackupConnector,
    BackupJobDay,
    BackupStatus,
    JobOutcome,
)
from integrations.models import Connection
from integrations.registry import provider_label
from integrations.services import degraded_filter
from integrations.sql import id_array

from .compose import in_message
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
    account_link_id: int | None = None
    # Why, in words (kept on the alert and carried by every message about it).
    detail: str = ""
    # A countdown's step (days left: "30", "7", "1", "0"): a nearer step is news.
    stage: str = ""


class Conditions:
    """The conditions that hold, by key; their words are built only for the keys asked.
    At 80,000 connectors most conditions hold pass after pass and their alerts are already
    open: only the new ones need a summary and a detail (building them all took most of a
    steady pass). `kind`: the kind all of them share (None: mixed kinds; "": none holds,
    so no open alert's words need reading); alerts/lifecycle.py asks for the words of
    open alerts too when their kind's words follow the data. `evaluated`: the connectors
    looked at (an incremental pass, alerts/passes.py); None: every connector. The open
    alerts of connectors not looked at stay as they are."""

    def __init__(
        self,
        keys: Iterable[str],
        words: Callable[[list[str]], list[Condition]],
        *,
        kind: str | None,
        evaluated: Collection[int] | None = None,
    ) -> None:
        self.keys = dict.fromkeys(keys)
        self._words = words
        self.kind = kind
        self.evaluated = evaluated

    @classmethod
    def listed(
        cls, conditions: list[Condition], *, evaluated: Collection[int] | None = None
    ) -> Conditions:
        """Conditions whose words are already built; their kind when they share one ("":
        none holds, so no open alert's words need reading)."""
        by_key = {c.key: c for c in conditions}
        kinds = {c.kind for c in conditions}
        kind = kinds.pop() if len(kinds) == 1 else ("" if not kinds else None)
        return cls(
            by_key, lambda keys: [by_key[key] for key in keys], kind=kind, evaluated=evaluated
        )

    def words(self, keys: Collection[str]) -> list[Condition]:
        """The conditions of these keys that still hold; connectors' conditions in the
        connectors' order (by name), as the alerts are listed."""
        wanted = [key for key in keys if key in self.keys]
        return self._words(wanted) if wanted else []

    def all(self) -> list[Condition]:
        return self.words(list(self.keys))

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        return key in self.keys


def rule_key(rule: AlertRule, connector_id: int) -> str:
    return f"{rule.pk}:{connector_id}"


def sync_key(connection_id: int) -> str:
    return f"sync:{connection_id}"


def degraded_key(connection_id: int) -> str:
    return f"degraded:{connection_id}"


def _days(count: int) -> str:
    return "1 day" if count == 1 else f"{count} days"


def countdown_stage(moment: datetime, now: datetime) -> tuple[str, int]:
    """The step of a countdown to `moment` ("30", "7", "1" days left, "0" passed) and the
    whole days left (rounded up)."""
    seconds = (moment - now).total_seconds()
    if seconds <= 0:
        return "0", 0
    days = int(-(-seconds // 86400))
    stage = "1" if days <= 1 else "7" if days <= 7 else "30"
    return stage, days


def _scoped_connectors(rule: AlertRule) -> QuerySet[BackupConnector]:
    # Removed connectors, connectors the vendor is deleting and connectors of excluded
    # accounts never alert.
    connectors = (
        BackupConnector.objects.filter(removed_at__isnull=True, deletion_scheduled_at__isnull=True)
        .exclude(account_link__state=AccountLink.State.EXCLUDED)
        # An account the vendor is deleting has its own alert; its connectors stay quiet.
        .exclude(account_link__deletion_scheduled_at__isnull=False)
    )
    if rule.connector_kinds:
        connectors = connectors.filter(kind__in=rule.connector_kinds)
    # A subquery, not a Python list: the scope costs no extra round trip.
    scoped_customers = AlertRule.customers.through.objects.filter(alertrule_id=rule.pk)
    connectors = connectors.filter(
        Q(~Exists(scoped_customers)) | Q(customer_id__in=scoped_customers.values("customer_id"))
    )
    return connectors


def stale_conditions(
    rule: AlertRule, *, now: datetime, only: Collection[int] | None = None
) -> Conditions:
    """No complete backup within the threshold; never-completed connectors only after
    the onboarding grace from when they were first seen. The keys are one narrow read
    (ids only; `only` these connectors); the words read the few connectors asked."""
    stale_before = now - timedelta(hours=rule.threshold_hours)
    grace_before = now - timedelta(hours=rule.onboarding_grace_hours)
    stale = Q(backup_status__last_success_at__lt=stale_before) | Q(
        backup_status__last_success_at__isnull=True, first_seen_at__lt=grace_before
    )
    connectors = _scoped_connectors(rule).filter(stale)
    if only is not None:
        connectors = connectors.filter(pk__in=id_array(only))
    holding = {rule_key(rule, pk): pk for pk in connectors.order_by().values_list("pk", flat=True)}

    def words(keys: list[str]) -> list[Condition]:
        # Still stale (a sync may have stored a backup since the keys were read): never an
        # alert saying "no complete backup for 0 hours".
        rows = BackupConnector.objects.filter(
            stale, pk__in=id_array([holding[key] for key in keys])
        ).values_list(
            "pk", "name", "customer__name", "backup_status__last_success_at", "first_seen_at"
        )
        conditions = []
        for pk, name, customer, last_success, first_seen in rows:  # by name, as listed
            if last_success is None:
                what = "no complete backup since it was added"
                detail = (
                    "No complete backup since the connector was added "
                    f"({in_message(first_seen)}); new connectors get "
                    f"{rule.onboarding_grace_hours} h to finish their first."
                )
            else:
                hours = int((now - last_success).total_seconds() // 3600)
                what = f"no complete backup for {hours} hours"
                detail = (
                    f"No complete backup since {in_message(last_success)} "
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

    return Conditions(holding, words, kind=Alert.Kind.BACKUP_STALE, evaluated=only)


def failed_conditions(
    rule: AlertRule, *, now: datetime, only: Collection[int] | None = None
) -> list[Condition]:
    """A recovery/connector failure in the audit log inside the lookback; (option) an
    unsuccessful or incomplete backup job inside the lookback not followed by a complete
    backup; (option) a failed status whose reason means a failure.

    Set-based, in three small queries whatever the fleet: the latest failure event of each
    connector in the lookback (index audit_failure_time_idx), its latest failed job —
    inside the lookback (index job_day_failure_recent_idx), or within the days kept when
    its alert is already open (index job_day_failure_time_idx) — then the connectors those
    name, or whose status failed, with what the message needs. (Per-connector subqueries
    over 80,000 connectors and 7 million events took seconds.) `only`: of these
    connectors (each read then starts from the connectors' own rows)."""
    since = now - timedelta(hours=rule.lookback_hours)
    events = BackupAuditEvent.objects.filter(
        succeeded=False,
        category__in=FAILURE_CATEGORIES,
        occurred_at__gte=since,
        occurred_at__lte=now,
        connector_id__isnull=False,
    )
    if only is not None:
        events = events.filter(connector_id__in=id_array(only))
    failures: dict[int, tuple[datetime, str]] = {}
    for connector_id, at, message in events.order_by("occurred_at", "id").values_list(
        "connector_id", "occurred_at", "message"
    ):
        failures[connector_id] = (at, message)  # the latest wins
    jobs: dict[int, tuple[datetime, str, str, bool]] = {}
    if rule.include_failed_jobs:
        # A failed job inside the lookback opens the alert; once open, it stays open until
        # a complete backup follows the failed job (not merely until the lookback
        # passes), as long as the failure is within the days kept. Two reads, each on its
        # own index (one OR of both scanned every failure kept: 150-250 ms at 80,000
        # connectors): the lookback's failures, then the older ones of open alerts.
        failed_days = BackupJobDay.objects.filter(last_failure_at__lte=now)
        if only is not None:
            failed_days = failed_days.filter(connector_id__in=id_array(only))
        failed = failed_days.order_by().values_list(
            "connector_id",
            "last_failure_at",
            "id",
            "last_failure_outcome",
            "last_error",
            "last_failure_exact",
        )
        open_ids = Alert.objects.filter(
            rule=rule, resolved_at__isnull=True, connector__isnull=False
        ).values("connector_id")
        # One statement (UNION ALL), so both halves see the same moment of a sync's writes.
        found = failed.filter(last_failure_at__gte=since).union(
            failed.filter(
                connector_id__in=open_ids,
                last_failure_at__gte=now - timedelta(days=HISTORY_DAYS),
                last_failure_at__lt=since,
            ),
            all=True,
        )
        for connector_id, failed_job_at, _pk, outcome, error, exact in sorted(
            found, key=lambda row: (row[1] or now, row[2])
        ):
            if failed_job_at is not None:  # (for the type checker: the filters exclude it)
                jobs[connector_id] = (failed_job_at, outcome, error, exact)  # the latest wins
    # Asked once per provider, not per condition (thousands at 80,000 connectors: the
    # settings lookup behind it cost 60 ms a pass).
    vendor_of = cache(provider_label)
    candidates = Q(pk__in=id_array({*failures, *jobs}))
    if rule.include_failed_status:
        candidates |= Q(
            backup_status__status=BackupStatus.FAILED, backup_status__reason_is_failure=True
        )
    scoped = _scoped_connectors(rule).filter(candidates)
    if only is not None:
        scoped = scoped.filter(pk__in=id_array(only))
    rows = scoped.values_list(
        "pk",
        "name",
        "customer__name",
        "connection__provider",
        "backup_status__reason",
        "backup_status__reason_text",
        "backup_status__status",
        "backup_status__reason_is_failure",
        "backup_status__fix_text",
        "backup_status__last_success_at",
    )
    conditions = []
    for (
        pk,
        name,
        customer,
        provider,
        reason,
        reason_text,
        status,
        needs,
        fix_text,
        last_success,
    ) in rows:
        vendor = vendor_of(provider)
        subject = f"{customer}: {name}" if customer else name
        reasons, what = [], ""
        if pk in failures:
            failed_at, message = failures[pk]
            failed_when = in_message(failed_at)
            reasons.append(
                f"Failed in the {vendor} audit log at {failed_when}: \u201c{message}\u201d."
            )
            what = f"a failure in the {vendor} audit log"
        if pk in jobs:
            job_at, job_outcome, error, exact = jobs[pk]
            if last_success is None or last_success < job_at:
                incomplete = job_outcome == JobOutcome.INCOMPLETE
                outcome = "ended incomplete" if incomplete else "failed"
                if exact:
                    when = f"A {vendor} backup job {outcome} at {in_message(job_at)}"
                else:
                    when = (
                        f"{vendor} counted a backup job that {outcome} (seen by the sync at "
                        f"{in_message(job_at)}; {vendor}'s job history did not say more yet)"
                    )
                reasons.insert(0, when + (f": \u201c{error}\u201d." if error else "."))
                what = f"backup job {outcome}" + (f": {error}" if error else "")
        reason = reason or ""
        reason_text = reason_text or reason
        if rule.include_failed_status and status == BackupStatus.FAILED and needs:
            said = fix_text or reason_text
            reasons.append(f"{vendor} says: {said}.")
            what = what or reason_text
        if not reasons:
            continue
        conditions.append(
            Condition(
                key=rule_key(rule, pk),
                kind=Alert.Kind.BACKUP_FAILED,
                summary=f"{subject} — {what}"[:255],
                reason=reason,
                connector_id=pk,
                detail=" ".join(reasons),
            )
        )
    return conditions


def success_rate_conditions(
    rule: AlertRule, *, now: datetime, only: Collection[int] | None = None
) -> Conditions:
    """Connectors whose finished backup jobs over the rule's days succeeded less often
    than the rule's percentage (connectors without a finished job never). One aggregate
    over the window's job days, grouped by connector (index job_day_day_brin finds the
    days; `only` these connectors: index job_day_unique_connector); the words then read
    the names of the connectors asked."""
    today = now.date()
    finished = F("successful") + F("incomplete") + F("unsuccessful")
    days = BackupJobDay.objects.filter(
        day__gt=today - timedelta(days=rule.success_rate_days), day__lte=today
    )
    scoped = _scoped_connectors(rule)
    if only is not None:
        # Both sides narrowed: the scope is then a few index probes, not a hash of the fleet.
        days = days.filter(connector_id__in=id_array(only))
        scoped = scoped.filter(pk__in=id_array(only))
    below = {
        rule_key(rule, row["connector_id"]): (row["connector_id"], row["ok"], row["done"])
        for row in days.filter(connector_id__in=scoped.values("pk"))
        .order_by()
        .values("connector_id")
        .annotate(ok=Sum("successful"), done=Sum(finished))
        .filter(done__gt=0, ok__lt=F("done") * rule.success_rate_percent / 100.0)
    }

    def words(keys: list[str]) -> list[Condition]:
        rows = BackupConnector.objects.filter(
            pk__in=id_array([below[key][0] for key in keys])
        ).values_list("pk", "name", "customer__name")
        conditions = []
        for pk, name, customer in rows:  # by name, as listed
            _, ok, done = below[rule_key(rule, pk)]
            rate = success_rate(ok, done) or 0.0
            subject = f"{customer}: {name}" if customer else name
            days = _days(rule.success_rate_days)
            conditions.append(
                Condition(
                    key=rule_key(rule, pk),
                    kind=Alert.Kind.SUCCESS_RATE,
                    summary=(f"{subject} — {format_rate(rate)} of backup jobs succeeded in {days}")[
                        :255
                    ],
                    connector_id=pk,
                    detail=(
                        f"{ok} of {done} finished backup jobs succeeded in the last {days} "
                        f"({format_rate(rate)}; the rule wants at least "
                        f"{rule.success_rate_percent} %). Incomplete and unsuccessful jobs "
                        "count against it; the customer page shows each day."
                    ),
                )
            )
        return conditions

    return Conditions(below, words, kind=Alert.Kind.SUCCESS_RATE, evaluated=only)


def _monitored_accounts() -> QuerySet[AccountLink]:
    return AccountLink.objects.filter(removed_at__isnull=True, connection__enabled=True).exclude(
        state=AccountLink.State.EXCLUDED
    )


def _account_subject(link: AccountLink) -> str:
    return link.customer.name if link.customer else link.display_name


def seat_conditions(*, now: datetime) -> list[Condition]:
    """Accounts over a seat limit, one alert each, with the days of grace left (its step
    moves at 7 and 1 days left and when the grace period is over)."""
    # Plain values, not model instances: a large MSP can have thousands of accounts over a
    # limit, and instances cost more than the query.
    seats = (
        AccountSeat.objects.filter(violated=True, account_link__in=_monitored_accounts())
        .order_by("account_link_id", "grace_expires_at", "label")
        .values_list(
            "account_link_id",
            "label",
            "usage",
            "limit",
            "grace_expires_at",
            "account_link__connection_id",
            "account_link__connection__provider",
            "account_link__customer__name",
            "account_link__company_name",
            "account_link__contact_name",
            "account_link__email",
            "account_link__external_id",
        )
    )
    by_link: dict[int, list[tuple[Any, ...]]] = {}
    vendor_of = cache(provider_label)  # once per provider, not per account
    for seat in seats:
        by_link.setdefault(seat[0], []).append(seat)
    conditions = []
    for link_id, violated in by_link.items():
        (_, _, _, _, _, connection_id, provider, customer, *names) = violated[0]
        vendor = vendor_of(provider)
        parts = []
        for _link, label, usage, limit, _grace, *_rest in violated:
            if limit is None:
                parts.append(f"{label}: {usage} used")
            else:
                parts.append(f"{label}: {usage} used of {limit} (over by {max(0, usage - limit)})")
        grace = [seat[4] for seat in violated if seat[4] is not None]
        stage, what = "", "seat limit exceeded"
        detail = f"{vendor} reports a seat limit exceeded — " + "; ".join(parts) + "."
        if grace:
            ends = min(grace)
            stage, days = countdown_stage(ends, now)
            if stage == "0":
                what = "seat limit exceeded, the grace period is over"
                detail += (
                    f" The grace period ended {in_message(ends)}: {vendor} may stop backing up."
                )
            else:
                what = f"seat limit exceeded, {_days(days)} of grace left"
                detail += f" The grace period ends {in_message(ends)} ({_days(days)} left)."
            stage = "grace" if stage == "30" else stage
        subject = customer or next((name for name in names if name), "")
        conditions.append(
            Condition(
                key=f"seat:{link_id}",
                kind=Alert.Kind.SEAT_EXCEEDED,
                summary=f"{subject} — {what}"[:255],
                connection_id=connection_id,
                account_link_id=link_id,
                detail=detail,
                stage=stage,
            )
        )
    return conditions


def account_failing_conditions(*, now: datetime) -> list[Condition]:
    """Accounts whose connectors (two or more) all fail for one and the same vendor
    reason — a lost sign-in to the tenant, usually: one alert carries them all, and the
    per-connector alerts it explains wait behind it (alerts/grouping.py)."""
    live = BackupConnector.objects.filter(
        removed_at__isnull=True,
        account_link__in=_monitored_accounts(),
        account_link__deletion_scheduled_at__isnull=True,
    )
    # The database finds the few candidate accounts (one GROUP BY over the fleet); only
    # their connectors are read.
    candidates = (
        live.order_by()
        .values("account_link_id")
        .annotate(
            connectors=Count("pk"),
            failed=Count("pk", filter=Q(backup_status__status=BackupStatus.FAILED)),
            reasons=Count("backup_status__reason", distinct=True),
            reason=Min("backup_status__reason"),
        )
        .filter(connectors__gte=2, failed=F("connectors"), reasons=1)
        .exclude(reason="")
        .values_list("account_link_id", flat=True)
    )
    rows = (
        live.filter(account_link_id__in=list(candidates))
        .order_by("account_link_id", "pk")
        .values_list(
            "account_link_id",
            "backup_status__status",
            "backup_status__reason",
            "backup_status__reason_text",
            "backup_status__fix_text",
            "name",
        )
    )
    by_account: dict[int, list[tuple[Any, ...]]] = {}
    for row in rows:
        by_account.setdefault(row[0], []).append(row)
    failing = {
        link_id: connectors
        for link_id, connectors in by_account.items()
        if len(connectors) >= 2
        and all(c[1] == BackupStatus.FAILED for c in connectors)
        and connectors[0][2]
        and len({c[2] for c in connectors}) == 1
    }
    links = {
        link.pk: link
        for link in AccountLink.objects.filter(pk__in=list(failing)).select_related(
            "customer", "connection"
        )
    }
    conditions = []
    for link_id, connectors in failing.items():
        link = links[link_id]
        vendor = provider_label(link.connection.provider)
        reason, reason_text, fix_text = connectors[0][2], connectors[0][3], connectors[0][4]
        said = fix_text or reason_text or reason
        names = ", ".join(c[5] for c in connectors)
        conditions.append(
            Condition(
                key=f"account-failing:{link_id}:{reason}"[:64],
                kind=Alert.Kind.ACCOUNT_FAILING,
                summary=f"{_account_subject(link)} — all {len(connectors)} connectors failing: "
                f"{reason_text or reason}"[:255],
                reason=reason,
                connection_id=link.connection_id,
                account_link_id=link_id,
                detail=(
                    f"Every connector of the {vendor} account {link.display_name} fails for "
                    f"the same reason ({names}). {vendor} says: {said}. Their own alerts wait "
                    "behind this one."
                ),
            )
        )
    return conditions


def deletion_conditions(*, now: datetime) -> list[Condition]:
    """Accounts the vendor has scheduled for deletion (with their backups)."""
    links = (
        _monitored_accounts()
        .filter(deletion_scheduled_at__isnull=False)
        .select_related("customer", "connection")
    )
    conditions = []
    for link in links:
        vendor = provider_label(link.connection.provider)
        when = link.deletion_scheduled_at
        assert when is not None
        stage, days = countdown_stage(when, now)
        left = "the date has passed" if stage == "0" else f"in {_days(days)}"
        conditions.append(
            Condition(
                key=f"deletion:{link.pk}",
                kind=Alert.Kind.ACCOUNT_DELETION,
                summary=f"{_account_subject(link)} — {vendor} account scheduled for deletion "
                f"{when:%Y-%m-%d}"[:255],
                connection_id=link.connection_id,
                account_link_id=link.pk,
                stage=stage,
                detail=(
                    f"{vendor} will delete the account {link.display_name} "
                    f"({link.external_id}) and its backups at {in_message(when)} ({left}). If that "
                    f"is not intended, cancel the deletion in {vendor} before then."
                ),
            )
        )
    return conditions


TOKEN_WARNING_DAYS = 30


def token_conditions(*, now: datetime) -> list[Condition]:
    """Connections whose credential expires within 30 days (told again at 7 and 1 days
    left, and once expired). The alert is keyed on the expiry date, so renewing the
    credential (a new expiry) resolves it, even when the new one is soon too."""
    rows = Connection.objects.filter(
        enabled=True,
        credential_expires_at__isnull=False,
        credential_expires_at__lte=now + timedelta(days=TOKEN_WARNING_DAYS),
    )
    conditions = []
    for connection in rows:
        expires = connection.credential_expires_at
        assert expires is not None
        vendor = provider_label(connection.provider)
        stage, days = countdown_stage(expires, now)
        noun = "login" if connection.credential_kind == "username_password" else "API token"
        if stage == "0":
            what = f"the {noun} has expired"
            detail = (
                f"The {vendor} {noun} this connection signs in with expired at "
                f"{in_message(expires)}: syncs will fail. Create a new API token in {vendor} and "
                "paste it into the connection."
            )
        else:
            what = f"the {noun} expires in {_days(days)}"
            detail = (
                f"The {vendor} {noun} this connection signs in with expires at "
                f"{in_message(expires)} ({_days(days)} left). Create a new API token in {vendor} "
                "and paste it into the connection before then, or every sync will fail."
            )
        conditions.append(
            Condition(
                key=f"token:{connection.pk}:{expires:%Y%m%d%H%M}",
                kind=Alert.Kind.TOKEN_EXPIRY,
                summary=f"{connection.name}: {what}"[:255],
                connection_id=connection.pk,
                detail=detail,
                stage=stage,
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
            f"since {in_message(connection.last_success_at)}"
            if connection.last_success_at
            else "ever"
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


def rule_conditions(
    rule: AlertRule, *, now: datetime, only: Collection[int] | None = None
) -> Conditions:
    """The rule's conditions; `only`: of these connectors (an incremental pass: see
    alerts/passes.py), None: of every connector."""
    if rule.kind == AlertRule.Kind.BACKUP_STALE:
        return stale_conditions(rule, now=now, only=only)
    if rule.kind == AlertRule.Kind.SUCCESS_RATE:
        return success_rate_conditions(rule, now=now, only=only)
    return Conditions.listed(failed_conditions(rule, now=now, only=only), evaluated=only)
