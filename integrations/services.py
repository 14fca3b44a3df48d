"""What the integrations framework tells the pages: one card per provider with its
state, and per connection how fresh its data is ("Data as of …")."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, F, OuterRef, Q, Subquery
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince, timeuntil

from .base import Provider
from .models import Connection, SyncChunk, SyncRun
from .registry import UnknownProvider, all_providers, get_provider


@dataclass(frozen=True)
class ProviderCard:
    kind: str
    name: str
    mark: str
    description: str
    state: str  # Not configured / Enabled / Disabled / Failing / Degraded
    summary: str
    configure_url: str
    can_configure: bool
    # Per connection: its credential's expiry and last use, and warnings about it.
    credentials: tuple[CredentialStatus, ...] = ()

    @property
    def badge_class(self) -> str:
        return {
            "Enabled": "vx-ok",
            "Failing": "vx-failed",
            "Degraded": "vx-warning",
            "Disabled": "vx-unknown",
        }.get(self.state, "vx-onboarding")


# A credential expiring sooner than this is flagged (the API-token alert opens then too).
CREDENTIAL_WARNING_DAYS = 30


@dataclass(frozen=True)
class CredentialStatus:
    """What the pages say about the credential a connection signs in with."""

    connection: str
    lines: tuple[str, ...]
    warning: str = ""
    tone: str = "ok"  # ok / warning / failed

    @property
    def badge_class(self) -> str:
        return {"warning": "vx-warning", "failed": "vx-failed"}.get(self.tone, "vx-ok")


def credential_status(connection: Connection, *, now: datetime) -> CredentialStatus:
    """Expiry and last use as the last sync read them; a warning when it signs in with a
    person's login rather than an API token."""
    try:
        provider: Provider | None = get_provider(connection.provider)
    except UnknownProvider:
        provider = None
    lines: list[str] = []
    tone = "ok"
    expires = connection.credential_expires_at
    personal = connection.credential_kind == "username_password"
    noun = "login" if personal else "API token"
    if connection.credential_checked_at is None:
        lines.append(f"{noun.capitalize()} expiry: not read yet (the next sync reads it).")
    elif expires is None:
        lines.append(connection.credential_note or f"The {noun} has no expiry date.")
    elif expires <= now:
        tone = "failed"
        lines.append(f"The {noun} expired on {timezone.localtime(expires):%Y-%m-%d %H:%M %Z}.")
    else:
        soon = expires - now <= timedelta(days=CREDENTIAL_WARNING_DAYS)
        tone = "warning" if soon else "ok"
        lines.append(
            f"The {noun} expires on {timezone.localtime(expires):%Y-%m-%d} "
            f"(in {timeuntil(expires, now, depth=1)})."
        )
    if connection.credential_last_used_at is not None:
        lines.append(
            f"Last used {timesince(connection.credential_last_used_at, now, depth=1)} ago."
        )
    warning = provider.personal_login_warning if personal and provider is not None else ""
    if warning and tone == "ok":
        tone = "warning"
    return CredentialStatus(
        connection=connection.name, lines=tuple(lines), warning=warning, tone=tone
    )


def failing_filter() -> Q:
    """Connections whose last attempt failed after (or without) their last success."""
    return Q(last_error_at__isnull=False) & (
        Q(last_success_at__isnull=True) | Q(last_error_at__gt=F("last_success_at"))
    )


def degraded_filter() -> Q:
    return Q(partial_runs_in_row__gte=settings.VECTIS_DEGRADED_AFTER_PARTIAL_RUNS)


def provider_cards(*, can_configure: Callable[[Provider], bool]) -> list[ProviderCard]:
    """One card per registered provider with its state, in one query."""
    enabled = Q(enabled=True)
    rows = {
        row["provider"]: row
        for row in Connection.objects.values("provider").annotate(
            total=Count("id"),
            enabled_count=Count("id", filter=enabled),
            failing_count=Count("id", filter=enabled & failing_filter()),
            degraded_count=Count("id", filter=enabled & ~failing_filter() & degraded_filter()),
        )
    }
    now = timezone.now()
    credentials: dict[str, list[CredentialStatus]] = {}
    for connection in Connection.objects.filter(enabled=True).order_by("name", "id"):
        credentials.setdefault(connection.provider, []).append(
            credential_status(connection, now=now)
        )
    cards = []
    for provider in all_providers():
        empty = {"total": 0, "enabled_count": 0, "failing_count": 0, "degraded_count": 0}
        row = rows.get(provider.kind, empty)
        total, enabled_count = row["total"], row["enabled_count"]
        failing, degraded = row["failing_count"], row["degraded_count"]
        if total == 0:
            state, summary = "Not configured", "No connection yet."
        elif failing:
            state = "Failing"
            summary = f"{failing} of {enabled_count} enabled connection(s) failing."
        elif degraded:
            state = "Degraded"
            summary = (
                f"{degraded} of {enabled_count} enabled connection(s) degraded: their last "
                f"{settings.VECTIS_DEGRADED_AFTER_PARTIAL_RUNS} syncs could not read "
                "everything."
            )
        elif enabled_count:
            state, summary = "Enabled", f"{enabled_count} of {total} connection(s) enabled."
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
                credentials=tuple(credentials.get(provider.kind, ())),
            )
        )
    return cards


# --- freshness --------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionFreshness:
    """What a page says about one connection: how fresh its data is, and whether it is
    healthy ("Data as of …")."""

    pk: int
    name: str
    provider_name: str
    state: str  # Enabled / Disabled / Failing / Degraded
    last_success_at: datetime | None
    last_error: str
    url: str
    # Vendor accounts the latest finished run could not read (their data is older).
    failed_accounts: frozenset[str] = frozenset()

    @property
    def badge_class(self) -> str:
        return {
            "Enabled": "vx-ok",
            "Failing": "vx-failed",
            "Degraded": "vx-warning",
        }.get(self.state, "vx-unknown")

    @property
    def needs_attention(self) -> bool:
        return self.state in ("Failing", "Degraded")


def setup_url() -> str:
    """Where "Connect … to start" leads: the add form of the one provider there is, or
    the Integrations page to choose among several."""
    providers = all_providers()
    if len(providers) == 1:
        return reverse(providers[0].admin_add)
    return reverse("admin:integrations_overview")


def setup_label() -> str:
    """What "Connect … to start" names: the one provider there is, or any."""
    providers = all_providers()
    return providers[0].name if len(providers) == 1 else "a backup vendor"


def connection_freshness(
    connection_ids: Collection[int] | None = None,
) -> list[ConnectionFreshness]:
    """Every connection (or the given ones) with its state and last successful sync,
    in one query; failing and degraded ones first."""
    latest_run = (
        SyncRun.objects.filter(connection=OuterRef("pk"))
        .exclude(outcome=SyncRun.Outcome.RUNNING)
        .order_by("-started_at", "-id")
    )
    connections = Connection.objects.annotate(
        latest_failed_accounts=Subquery(latest_run.values("failed_accounts")[:1])
    ).order_by("name", "id")
    if connection_ids is not None:
        connections = connections.filter(pk__in=connection_ids)
    rows = []
    for connection in connections:
        try:
            provider = get_provider(connection.provider)
        except UnknownProvider:
            continue
        rows.append(
            ConnectionFreshness(
                pk=connection.pk,
                name=connection.name,
                provider_name=provider.name,
                state=connection.state,
                last_success_at=connection.last_success_at,
                last_error=connection.last_error,
                url=reverse(provider.admin_change, args=[connection.pk]),
                failed_accounts=frozenset(
                    getattr(connection, "latest_failed_accounts", None) or []
                ),
            )
        )
    return sorted(rows, key=lambda row: (not row.needs_attention, row.name))


@dataclass(frozen=True)
class RunProgress:
    """Where a connection's latest sync is, for the live line on its page."""

    running: bool
    run_id: int | None
    phase: str
    accounts_done: int
    accounts_total: int
    events: int
    started_at: datetime | None
    text: str

    def as_json(self) -> dict[str, object]:
        return {
            "running": self.running,
            "run": self.run_id,
            "phase": self.phase,
            "accounts_done": self.accounts_done,
            "accounts_total": self.accounts_total,
            "events": self.events,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "text": self.text,
        }


def run_progress(connection_id: int) -> RunProgress:
    """The latest run's phase and progress, from its parts (two queries): accounts of
    finished parts against all accounts, events stored by finished parts."""
    run = (
        SyncRun.objects.filter(connection_id=connection_id)
        .order_by("-started_at", "-id")
        .only("id", "outcome", "started_at", "counts")
        .first()
    )
    if run is None:
        return RunProgress(False, None, "No sync yet", 0, 0, 0, None, "No sync yet.")
    chunks = list(run.chunks.values("kind", "state", "accounts", "counts"))
    ended = {SyncChunk.State.DONE, SyncChunk.State.FAILED}
    account_parts = [c for c in chunks if c["kind"] == SyncChunk.Kind.ACCOUNTS]
    total = sum(c["accounts"] for c in account_parts)
    done = sum(c["accounts"] for c in account_parts if c["state"] in ended)
    events = sum(
        int((c["counts"] or {}).get("events_added", 0)) for c in chunks if c["state"] in ended
    )
    running = run.outcome == SyncRun.Outcome.RUNNING
    if not running:
        events = int((run.counts or {}).get("events_added", events))
        phase = f"Last sync {run.get_outcome_display().lower()}"
    elif not account_parts and not any(c["kind"] == SyncChunk.Kind.AUDIT for c in chunks):
        phase = "Listing accounts"
    elif done < total:
        phase = "Reading accounts"
    elif any(c["kind"] == SyncChunk.Kind.AUDIT and c["state"] not in ended for c in chunks):
        phase = "Reading the audit log"
    else:
        phase = "Finishing"
    text = f"{phase}: {done:,} of {total:,} accounts read, {events:,} audit events stored"
    if running:
        text += " so far"
    return RunProgress(running, run.pk, phase, done, total, events, run.started_at, text + ".")
