"""The Keepit sync against the sandbox over loopback, into PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection as db
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from pytest_django.fixtures import Settings

from alerts import passes
from backups.models import (
    AccountLink,
    AuditCategory,
    BackupAuditEvent,
    BackupConnector,
    BackupConnectorStatus,
    BackupStatus,
    ConnectorKind,
)
from backups.runner import run_sync
from backups.snapshot import ConnectorSnapshot
from customers.models import Customer
from integrations.lifecycle import SyncAlreadyRunning
from integrations.models import Connection, SyncRun
from keepit.inventory import connector_from_stored, list_changed, list_due
from keepit.mapping import audit_category, backup_status
from keepit.schemas import BackupSummary, ConnectorHealth
from keepit_sandbox import KeepitSandbox
from tests.conftest import START, connect, lists_due, make_sandbox, sync
from tests.factories import CustomerFactory


def snapshot() -> dict[str, set[tuple[Any, ...]]]:
    """Every row's id and xmin (its version) in the synced tables."""
    tables = {
        "customers": "id",
        "integration_account_links": "id",
        "backup_connectors": "id",
        "backup_connector_status": "connector_id",
        "backup_audit_events": "id",
    }
    result = {}
    with db.cursor() as cursor:
        for table, key in tables.items():
            cursor.execute(f"SELECT {key}, xmin::text FROM {table}")  # noqa: S608
            result[table] = set(cursor.fetchall())
    return result


def job_day_versions() -> set[tuple[int, str]]:
    """Each job day's connector and version (its id and xmin)."""
    with db.cursor() as cursor:
        cursor.execute("SELECT connector_id, id::text || ':' || xmin::text FROM backup_job_days")
        return set(cursor.fetchall())


# --- a first sync ------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_first_sync_writes_customers_connectors_statuses_and_events(
    sandbox: KeepitSandbox, settings: Settings
) -> None:
    connection = connect(sandbox, settings)
    run = sync(connection, sandbox)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    msp = sandbox.msp
    assert AccountLink.objects.count() == 8
    # Duplicated and differently written company names share a customer; the empty
    # company name falls back to the contact's name.
    names = set(Customer.objects.values_list("name", flat=True))
    assert msp.accounts[7].company_name == ""
    assert msp.accounts[7].full_name in names
    assert len(names) == Customer.objects.count() < 8
    live = [c for a in msp.accounts for c in msp.connectors[a.guid] if c.type != "system"]
    assert BackupConnector.objects.count() == len(live)
    assert not BackupConnector.objects.filter(vendor_type="system").exists()
    dsl = {c.agent_type for c in live if c.type == "dsl"}
    assert dsl  # the sandbox MSP has generic-framework connectors: their kind is agent-type
    for agent_type in dsl:
        rows = BackupConnector.objects.filter(vendor_type=f"dsl/{agent_type}")
        assert rows.exists()
        assert {row.kind for row in rows} != {ConnectorKind.OTHER}
    m365 = sum(1 for c in live if c.type == "o365-admin")
    assert BackupConnector.objects.filter(kind=ConnectorKind.M365).count() == m365 >= 8
    assert BackupConnectorStatus.objects.count() == len(live)
    counts = run.counts
    assert counts["accounts_seen"] == 8
    assert counts["connectors_added"] == len(live)
    stored = BackupAuditEvent.objects.count()
    assert counts["events_added"] + counts["own_reads_added"] == stored > 8 * 6 * 13
    assert counts["events_added"] == BackupAuditEvent.objects.filter(is_own_read=False).count()
    # What the sandbox served (counted by the sandbox itself): the child list; per
    # account connectors, summary, every connector's health in one call, the job counts
    # of today and of one past day, its seats; per connection the seat violations and the
    # token (who am I, its tokens); the device status of connectors that are not healthy,
    # the job history of those whose jobs failed; every audit page.
    routes = sandbox.server.requests_by_route()
    audit_pages = routes["audit"]
    assert audit_pages >= 14 * 24 // 6  # the 14-day window, read in 6-hour slices
    assert (routes["children"], routes["devices"], routes["summary"]) == (1, 8, 8)
    assert routes["health"] == 8  # one per account, none per connector
    unhealthy = BackupConnectorStatus.objects.exclude(health="healthy").count()
    assert routes["status"] == counts["status_reads"] == unhealthy
    assert routes["jobs"] == 8 * 2
    assert routes["history"] == counts["job_history_reads"]
    assert routes["seats"] == 8 + 1
    assert (routes["whoami"], routes["tokens"]) == (1, 1)
    assert run.http_requests == sum(routes.values())
    connection.refresh_from_db()
    assert connection.last_success_at is not None


@pytest.mark.django_db
def test_statuses_follow_keepit_health_and_the_backup_summary(
    settings: Settings,
) -> None:
    sandbox = make_sandbox(accounts=40)
    try:
        connection = connect(sandbox, settings)
        sync(connection, sandbox)
        now = sandbox.clock.now()
        msp = sandbox.msp
        rows = {
            s.connector.external_id: s
            for s in BackupConnectorStatus.objects.select_related("connector")
        }
        seen_statuses = set()
        for account in msp.accounts:
            for sim in msp.connectors[account.guid]:
                if sim.type == "system":
                    continue
                state = msp.backup_state(sim, now)
                row = rows[sim.guid]
                seen_statuses.add(row.status)
                assert row.health == state.health
                assert row.reason == state.reason
                if state.last_complete is None:
                    assert row.last_success_at is None
                else:
                    assert row.last_success_at == datetime.fromtimestamp(state.last_complete, UTC)
                if state.last_snapshot is not None:
                    assert row.last_backup_at == datetime.fromtimestamp(state.last_snapshot, UTC)
        # Unknown: healthy with a reason code Keepit has not published (never counted OK).
        assert seen_statuses == {"ok", "warning", "failed", "onboarding", "unknown"}
    finally:
        sandbox.stop()


@pytest.mark.parametrize(
    ("complete", "health", "reason", "status"),
    [
        (True, "healthy", "", BackupStatus.OK),
        (True, "unhealthy", "NOCHECKIN", BackupStatus.WARNING),
        (True, "critical", "CLOUDNOCHECKIN", BackupStatus.FAILED),
        (True, "critical", "BADTOKEN", BackupStatus.FAILED),
        (True, "degraded", "", BackupStatus.UNKNOWN),
        (False, "healthy", "", BackupStatus.ONBOARDING),
        (False, "critical", "CLOUDNOCHECKIN", BackupStatus.ONBOARDING),
        (False, "critical", "BADLOGIN", BackupStatus.FAILED),
        (None, "healthy", "", BackupStatus.ONBOARDING),
    ],
)
def test_status_mapping(complete: bool | None, health: str, reason: str, status: str) -> None:
    summary = None
    if complete is not None:
        summary = BackupSummary(
            guid="c",
            last_snapshot_time=START,
            last_complete_snapshot_time=START if complete else None,
            last_snapshot_size=1,
            size_change=0,
        )
    assert backup_status(summary, ConnectorHealth(health, reason)) == status


@pytest.mark.parametrize(
    ("area", "category"),
    [
        ("User events", AuditCategory.USER),
        ("Account events", AuditCategory.ACCOUNT),
        ("Subaccount events", AuditCategory.ACCOUNT),
        ("Backup/Restore", AuditCategory.RECOVERY),
        ("Connector events", AuditCategory.CONNECTOR),
        ("Recovery", AuditCategory.RECOVERY),
        ("Security", AuditCategory.SECURITY),
        ("Compliance", AuditCategory.COMPLIANCE),
        ("Connection events", AuditCategory.CONNECTION),
        ("Reporting", AuditCategory.REPORTING),
        ("Miscellaneous", AuditCategory.OTHER),
        ("", AuditCategory.OTHER),
    ],
)
def test_audit_areas_map_to_categories(area: str, category: str) -> None:
    assert audit_category(area) == category


# --- matching accounts to customers --------------------------------------------------------


@pytest.mark.django_db
def test_accounts_link_exactly_by_normalised_name_or_not_at_all_when_ambiguous(
    sandbox: KeepitSandbox, settings: Settings
) -> None:
    msp = sandbox.msp
    exact = CustomerFactory.create(name=msp.accounts[0].company_name)
    base = msp.accounts[1].company_name  # e.g. "Fabrikam Inc."
    loose = CustomerFactory.create(name=base.upper().replace("INC.", "").strip() + " LLC")
    twins = [
        CustomerFactory.create(name=msp.accounts[2].company_name + " Ltd"),
        CustomerFactory.create(name=msp.accounts[2].company_name.upper()),
    ]
    connection = connect(sandbox, settings)
    run = sync(connection, sandbox)
    links = {link.external_id: link for link in AccountLink.objects.all()}
    first, second, third = (links[msp.accounts[i].guid] for i in range(3))
    assert (first.customer_id, first.method) == (exact.pk, AccountLink.Method.EXACT)
    assert (second.customer_id, second.method) == (loose.pk, AccountLink.Method.NORMALISED)
    assert third.customer_id is None
    assert third.state == AccountLink.State.AMBIGUOUS
    # Accounts 2 and 3 share the normalised name, so both are ambiguous, neither guessed.
    assert links[msp.accounts[3].guid].state == AccountLink.State.AMBIGUOUS
    assert run.counts["accounts_ambiguous"] == 2
    assert not BackupConnector.objects.filter(account_link=third).exclude(customer=None).exists()
    created = links[msp.accounts[4].guid]
    assert created.method == AccountLink.Method.CREATED
    assert created.customer is not None
    assert created.customer.name == msp.accounts[4].company_name
    # Existing customers are never renamed.
    assert Customer.objects.get(pk=loose.pk).name == loose.name
    assert {c.name for c in twins} <= set(Customer.objects.values_list("name", flat=True))


@pytest.mark.django_db
def test_a_manual_link_is_never_changed_by_a_sync(
    sandbox: KeepitSandbox, settings: Settings
) -> None:
    connection = connect(sandbox, settings)
    sync(connection, sandbox)
    chosen = CustomerFactory.create(name="Hand-picked customer")
    guid = sandbox.msp.accounts[0].guid
    AccountLink.objects.filter(external_id=guid).update(
        customer=chosen, method=AccountLink.Method.MANUAL, state=AccountLink.State.LINKED
    )
    sync(connection, sandbox)
    link = AccountLink.objects.get(external_id=guid)
    assert (link.customer_id, link.method) == (chosen.pk, AccountLink.Method.MANUAL)
    connectors = BackupConnector.objects.filter(account_link=link)
    assert connectors.exists()
    assert set(connectors.values_list("customer_id", flat=True)) == {chosen.pk}


# --- connectors coming and going --------------------------------------------------------------


@pytest.mark.django_db
def test_connectors_keepit_stops_reporting_are_marked_removed_and_come_back(
    sandbox: KeepitSandbox, settings: Settings
) -> None:
    connection = connect(sandbox, settings)
    sync(connection, sandbox)
    account = sandbox.msp.accounts[1]
    gone = sandbox.msp.connectors[account.guid].pop(0)
    run = sync(connection, sandbox)
    row = BackupConnector.objects.get(external_id=gone.guid)
    assert row.removed_at is not None
    assert row.updated_at == row.removed_at  # bulk writes still stamp updated_at
    assert run.counts["connectors_removed"] == 1
    assert BackupConnector.objects.filter(removed_at__isnull=True).count() == (
        BackupConnector.objects.count() - 1
    )
    sandbox.msp.connectors[account.guid].insert(0, gone)
    sync(connection, sandbox)
    row.refresh_from_db()
    assert row.removed_at is None
    assert BackupConnectorStatus.objects.filter(connector=row).exists()


@pytest.mark.django_db
def test_a_connector_list_is_read_hourly_or_at_once_when_the_health_shows_a_change(
    sandbox: KeepitSandbox, settings: Settings
) -> None:
    """Between its readings (at most an hour apart) an account's connector list stands as
    stored: a rename in Keepit waits for the next reading, while a connector the health
    no longer names is found at once, by reading that account's list alone. The run says
    how many lists it read."""
    settings.KEEPIT_CONNECTORS_REFRESH_MINUTES = 60
    connection = connect(sandbox, settings)
    msp = sandbox.msp
    first = sync(connection, sandbox)
    assert first.counts["connector_lists_read"] == len(msp.accounts)
    live = {a.guid: [c for c in msp.connectors[a.guid] if c.type != "system"] for a in msp.accounts}
    empty = {guid for guid, connectors in live.items() if not connectors}
    sandbox.advance(timedelta(minutes=15))
    due = lists_due(connection, sandbox.clock.now_datetime())
    renamed_in, shrunk = [a for a in msp.accounts if len(live[a.guid]) >= 2 and a.guid not in due][
        :2
    ]
    renamed = live[renamed_in.guid][0]
    renamed.name = "Renamed in Keepit"
    gone = live[shrunk.guid][0]
    msp.connectors[shrunk.guid].remove(gone)

    sandbox.server.reset_request_log()
    run = sync(connection, sandbox)
    devices = [e.path for e in sandbox.server.request_log if e.route == "devices"]
    read = {a.guid for a in msp.accounts if any(a.guid in path for path in devices)}
    assert read == empty | due | {shrunk.guid}
    assert len(devices) == len(read) == run.counts["connector_lists_read"]
    assert BackupConnector.objects.get(external_id=gone.guid).removed_at is not None
    assert BackupConnector.objects.get(external_id=renamed.guid).name != "Renamed in Keepit"
    assert run.counts.get("connectors_updated", 0) == 0

    # An hour on, every list has fallen due: the rename arrives.
    sandbox.advance(timedelta(minutes=60))
    again = sync(connection, sandbox)
    assert again.counts["connector_lists_read"] == len(msp.accounts)
    assert BackupConnector.objects.get(external_id=renamed.guid).name == "Renamed in Keepit"


@pytest.mark.django_db
def test_a_connector_moved_or_unreadable_health_reads_those_lists_and_sync_now_reads_all(
    sandbox: KeepitSandbox, settings: Settings
) -> None:
    """A connector Keepit now files under another account: the health of both accounts
    shows it, so both lists are read at once and the connector moves. An account whose
    health cannot be read in one call has its list read. Sync now reads every list."""
    settings.KEEPIT_CONNECTORS_REFRESH_MINUTES = 60
    connection = connect(sandbox, settings)
    msp = sandbox.msp
    sync(connection, sandbox)
    live = {a.guid: [c for c in msp.connectors[a.guid] if c.type != "system"] for a in msp.accounts}
    empty = {guid for guid, connectors in live.items() if not connectors}
    sandbox.advance(timedelta(minutes=15))
    due = lists_due(connection, sandbox.clock.now_datetime())
    source, target = [a for a in msp.accounts if len(live[a.guid]) >= 2 and a.guid not in due][:2]
    moved = live[source.guid][0]
    msp.connectors[source.guid].remove(moved)
    moved.account = target
    msp.connectors[target.guid].append(moved)

    sandbox.server.reset_request_log()
    run = sync(connection, sandbox)
    devices = [e.path for e in sandbox.server.request_log if e.route == "devices"]
    read = {a.guid for a in msp.accounts if any(a.guid in path for path in devices)}
    assert read == empty | due | {source.guid, target.guid}
    assert len(devices) == len(read) == run.counts["connector_lists_read"]
    row = BackupConnector.objects.get(external_id=moved.guid)
    assert row.removed_at is None
    assert row.account_link is not None
    assert row.account_link.external_id == target.guid

    sandbox.advance(timedelta(minutes=1))
    due = lists_due(connection, sandbox.clock.now_datetime())
    sandbox.inject("404", route="health")  # one account: Keepit without the one-call health
    sandbox.server.reset_request_log()
    run = sync(connection, sandbox)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    # The first account asked for its health (not empty, not due) had its list read too.
    first_asked = next(
        a.guid
        for e in sandbox.server.request_log
        if e.route == "health"
        for a in msp.accounts
        if a.guid in e.path
    )
    expected = empty | due | ({first_asked} - due)
    assert run.counts["connector_lists_read"] == len(expected)
    assert run.counts["health_fallbacks"] > 0

    sandbox.advance(timedelta(minutes=1))
    asked = run_sync(connection, now=sandbox.clock.now_datetime(), trigger=SyncRun.Trigger.MANUAL)
    assert asked.counts["connector_lists_read"] == len(msp.accounts)


@pytest.mark.django_db
def test_with_the_refresh_at_0_every_list_is_read_every_sync_and_nothing_is_recorded(
    sandbox: KeepitSandbox, settings: Settings
) -> None:
    settings.KEEPIT_CONNECTORS_REFRESH_MINUTES = 0
    connection = connect(sandbox, settings)
    sync(connection, sandbox)
    sandbox.advance(timedelta(minutes=15))
    again = sync(connection, sandbox)
    assert again.counts["connector_lists_read"] == len(sandbox.msp.accounts)
    assert not AccountLink.objects.filter(connectors_listed_at__isnull=False).exists()


@pytest.mark.django_db
def test_an_account_left_without_connectors_is_listed_every_sync_and_records_nothing(
    sandbox: KeepitSandbox, settings: Settings
) -> None:
    """Its list is read each sync (a new connector shows at once), and nothing about that
    is written: a sync that finds nothing new writes nothing."""
    settings.KEEPIT_CONNECTORS_REFRESH_MINUTES = 60
    connection = connect(sandbox, settings)
    sync(connection, sandbox)
    emptied = sandbox.msp.accounts[0]
    sandbox.msp.connectors[emptied.guid] = [
        c for c in sandbox.msp.connectors[emptied.guid] if c.type == "system"
    ]
    link = AccountLink.objects.get(external_id=emptied.guid)
    for _ in range(2):
        sandbox.advance(timedelta(minutes=15))
        sandbox.server.reset_request_log()
        sync(connection, sandbox)
        listed = [e.path for e in sandbox.server.request_log if e.route == "devices"]
        assert any(emptied.guid in path for path in listed)
    assert not BackupConnector.objects.filter(account_link=link, removed_at__isnull=True).exists()
    link.refresh_from_db()
    assert link.connectors_listed_at == START  # the first sync's, when it had connectors


def test_lists_read_together_fall_due_a_steady_share_at_a_time(settings: Settings) -> None:
    """400 accounts whose lists one sync read, then 5 hours of syncs every 15 minutes:
    each sync reads about a quarter of them (never all, the bunching a fixed age per
    account gives every 12th sync), and no list stands longer than the hour plus one
    interval."""
    settings.KEEPIT_CONNECTORS_REFRESH_MINUTES = 60
    accounts = [f"a{n:03d}xy-z12345-bc6789" for n in range(400)]
    listed = dict.fromkeys(accounts, START)
    shares = []
    for step in range(1, 21):
        now = START + timedelta(minutes=15 * step, seconds=step % 7)  # syncs start late
        due = [a for a in accounts if list_due(a, listed_at=listed[a], now=now)]
        assert all(now - listed[a] <= timedelta(minutes=75, seconds=7) for a in due)
        shares.append(len(due) / len(accounts))
        listed.update(dict.fromkeys(due, now))
    assert all(0.15 < share < 0.35 for share in shares), shares
    assert all(START + timedelta(hours=4) < at for at in listed.values())  # none left behind
    settings.KEEPIT_CONNECTORS_REFRESH_MINUTES = 0
    assert list_due(accounts[0], listed_at=START, now=START)  # every sync


def test_a_connector_the_summary_or_job_counts_name_reads_the_list() -> None:
    stored = {"aaa111-bbb222-ccc333", "ddd444-eee555-fff666"}
    assert not list_changed(stored, health=set(stored), named=set(stored))
    assert list_changed(stored, health=set(stored), named={"new000-new000-new000"})
    assert list_changed(stored, health=stored - {"aaa111-bbb222-ccc333"}, named=set())
    assert list_changed(stored, health=set(), named=set())  # the health not read in one call


@pytest.mark.parametrize("vendor_type", ["o365-admin", "dsl/okta", "dsl", ""])
def test_a_stored_connector_reads_back_as_its_list_gave_it(vendor_type: str) -> None:
    """The stored list stands for Keepit's: the same type and agent type (so the same
    kind), so a sync that takes it writes nothing."""
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    back = connector_from_stored(
        ConnectorSnapshot(
            "abc123-def456-ghi789", "Mail", "other", vendor_type, False, None, created
        )
    )
    assert (back.vendor_type, back.accessible, back.created) == (vendor_type, False, created)
    kind, _, agent = vendor_type.partition("/")
    assert (back.type, back.agent_type) == (kind, agent)


# --- audit log --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_audit_events_are_deduplicated_across_overlapping_windows_and_the_cursor_advances(
    sandbox: KeepitSandbox, settings: Settings
) -> None:
    connection = connect(sandbox, settings)
    first = sync(connection, sandbox)
    connection.refresh_from_db()
    assert connection.sync_state["audit_cursor"] == START.isoformat()
    total = BackupAuditEvent.objects.count()
    sandbox.advance(timedelta(minutes=15))
    second = sync(connection, sandbox)
    connection.refresh_from_db()
    assert connection.sync_state["audit_cursor"] == (START + timedelta(minutes=15)).isoformat()
    # The second window re-read the 60-minute overlap: those records were not inserted again.
    assert second.counts["events_seen"] > second.counts["events_added"]
    added = second.counts["events_added"] + second.counts["own_reads_added"]
    assert BackupAuditEvent.objects.count() == total + added
    keys = BackupAuditEvent.objects.values_list("dedup_key", flat=True)
    assert len(set(keys)) == len(keys)
    assert first.counts["events_seen"] > 8 * 6 * 13  # the first run read 14 days
    oldest = BackupAuditEvent.objects.order_by("occurred_at").first()
    assert oldest is not None
    assert oldest.occurred_at >= START - timedelta(days=14)


@pytest.mark.django_db
def test_events_link_to_customers_and_connectors_and_failures_are_kept(
    sandbox: KeepitSandbox, settings: Settings
) -> None:
    connection = connect(sandbox, settings)
    sync(connection, sandbox)
    with_device = BackupAuditEvent.objects.exclude(connector_external_id="")
    assert with_device.exists()
    assert not with_device.filter(connector=None).exists()
    customer_events = BackupAuditEvent.objects.exclude(customer=None)
    assert customer_events.count() > 0
    assert BackupAuditEvent.objects.filter(
        succeeded=False, category=AuditCategory.RECOVERY
    ).exists()
    assert BackupAuditEvent.objects.filter(
        category=AuditCategory.OTHER, area="Miscellaneous"
    ).exists()


@pytest.mark.django_db
def test_vectis_own_api_reads_are_stored_but_marked(
    sandbox: KeepitSandbox, settings: Settings
) -> None:
    connection = connect(sandbox, settings)
    sync(connection, sandbox)
    sandbox.advance(timedelta(minutes=15))
    run = sync(connection, sandbox)
    own = BackupAuditEvent.objects.filter(is_own_read=True)
    assert own.count() == run.counts["own_reads_added"] > 0
    assert set(own.values_list("actor", flat=True)) == {sandbox.config.token_login}
    others = BackupAuditEvent.objects.filter(is_own_read=False)
    assert not others.filter(actor=sandbox.config.token_login).exists()


# --- idempotency, failures, concurrency ----------------------------------------------------


@pytest.mark.django_db
def test_a_second_sync_of_unchanged_data_writes_no_row(
    quiet_sandbox: KeepitSandbox, settings: Settings
) -> None:
    connection = connect(quiet_sandbox, settings)
    sync(connection, quiet_sandbox)
    before = snapshot()
    days_before = job_day_versions()
    passes.take_changes()  # the first sync's marks
    run = sync(connection, quiet_sandbox)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED
    assert snapshot() == before
    # The job history's backfill reads one more past day per sync (for 28 syncs): only
    # the connectors of the days it wrote are marked for the alert evaluation, whose
    # next pass looks at them alone (alerts/passes.py).
    written = {connector for connector, version in job_day_versions() - days_before}
    assert passes.take_changes() == written
    assert run.counts["events_added"] == 0
    assert run.counts["connectors_added"] == run.counts["connectors_updated"] == 0
    assert run.counts["status_changes"] == 0
    assert SyncRun.objects.count() == 2


@pytest.mark.django_db
def test_the_daily_refresh_of_unchanged_rows_writes_only_when_they_were_seen(
    quiet_sandbox: KeepitSandbox, settings: Settings
) -> None:
    """Unchanged accounts, connectors and status rows get `last_seen_at` / `checked_at`
    refreshed at most daily — by those columns alone: a statement setting a column the
    dashboard's tiles count would end the kept tiles (vectis.fleet_tiles) every sync."""
    connection = connect(quiet_sandbox, settings)
    sync(connection, quiet_sandbox)
    two_days = timedelta(days=2)
    AccountLink.objects.update(last_seen_at=F("last_seen_at") - two_days)
    BackupConnector.objects.update(last_seen_at=F("last_seen_at") - two_days)
    BackupConnectorStatus.objects.update(checked_at=F("checked_at") - two_days)
    with CaptureQueriesContext(db) as captured:
        run = sync(connection, quiet_sandbox)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED
    now = quiet_sandbox.clock.now_datetime()
    assert set(BackupConnectorStatus.objects.values_list("checked_at", flat=True)) == {now}
    assert set(BackupConnector.objects.values_list("last_seen_at", flat=True)) == {now}
    assert set(AccountLink.objects.values_list("last_seen_at", flat=True)) == {now}
    refreshed = {
        "integration_account_links": {'"last_seen_at"', '"updated_at"'},
        "backup_connectors": {'"last_seen_at"', '"updated_at"'},
        "backup_connector_status": {'"checked_at"'},
    }
    seen: set[str] = set()
    for query in captured.captured_queries:
        sql = query["sql"]
        for name, columns in refreshed.items():
            if sql.startswith(f'UPDATE "{name}" AS t SET '):  # noqa: S608
                assignments = sql.split(" SET ", 1)[1].split(" FROM ", 1)[0]
                assert {a.split(" = ")[0] for a in assignments.split(", ")} == columns, sql
                seen.add(name)
    assert seen == set(refreshed)


@pytest.mark.django_db
def test_a_failing_account_makes_the_run_partial_and_loses_nothing(
    sandbox: KeepitSandbox, settings: Settings
) -> None:
    connection = connect(sandbox, settings)
    sync(connection, sandbox)
    broken = sandbox.msp.accounts[3]
    before = set(
        BackupConnector.objects.filter(account_link__external_id=broken.guid).values_list(
            "external_id", "removed_at", "name"
        )
    )
    statuses_before = BackupConnectorStatus.objects.count()
    sandbox.server.failing_accounts.add(broken.guid)
    sandbox.msp.connectors[sandbox.msp.accounts[4].guid].pop()  # a real change elsewhere
    run = sync(connection, sandbox)
    assert run.outcome == SyncRun.Outcome.PARTIAL
    assert run.failed_accounts == [broken.guid]
    assert "1 account(s) could not be read" in run.error
    assert (broken.company_name or broken.full_name) in run.error
    after = set(
        BackupConnector.objects.filter(account_link__external_id=broken.guid).values_list(
            "external_id", "removed_at", "name"
        )
    )
    assert after == before
    assert BackupConnectorStatus.objects.count() == statuses_before
    assert run.counts["connectors_removed"] == 1  # the other account was still written
    connection.refresh_from_db()
    assert connection.last_error == run.error


@pytest.mark.django_db
def test_a_failed_customer_list_fails_the_run_with_a_sentence(
    sandbox: KeepitSandbox, settings: Settings
) -> None:
    connection = connect(sandbox, settings)
    connection.set_secrets({"password": "wrong", "token_password": "wrong"})
    connection.save()
    run = sync(connection, sandbox)
    assert run.outcome == SyncRun.Outcome.FAILED
    assert run.error.startswith("Keepit refused the credentials (region us-dc)")
    assert run.http_requests == sandbox.server.requests_served == 1  # the child list, refused
    assert Customer.objects.count() == 0
    connection.refresh_from_db()
    assert connection.is_failing()


@pytest.mark.django_db(transaction=True)
def test_two_syncs_started_together_run_once(settings: Settings) -> None:
    sandbox = make_sandbox(accounts=4)
    sandbox.server.latency = 0.02
    try:
        connection = connect(sandbox, settings)
        barrier = threading.Barrier(2)
        results: list[str] = []

        def attempt() -> None:
            from django.db import connections

            barrier.wait()
            try:
                run = run_sync(
                    Connection.objects.get(pk=connection.pk), now=sandbox.clock.now_datetime()
                )
                results.append(run.outcome)
            except SyncAlreadyRunning:
                results.append("already running")
            finally:
                connections.close_all()

        threads = [threading.Thread(target=attempt) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(results) == ["already running", "succeeded"]
        assert SyncRun.objects.count() == 1
    finally:
        sandbox.stop()


@pytest.mark.django_db
def test_a_fanned_out_run_holds_the_connection_while_its_parts_wait(
    sandbox: KeepitSandbox, settings: Settings
) -> None:
    """`sync_connection` stores the account list, queues the parts for any worker and
    returns. The run still holds the connection: a second `sync_connection` (Sync now
    clicked twice, the next beat tick) is refused, and no second run or part appears."""
    from backups.tasks import sync_connection
    from integrations.models import SyncChunk

    connection = connect(sandbox, settings)
    first = sync_connection.apply(args=(connection.pk, "manual")).get()
    assert first["outcome"] == SyncRun.Outcome.RUNNING, first
    second = sync_connection.apply(args=(connection.pk, "manual")).get()
    assert second == {"connection": connection.pk, "skipped": "already running"}
    assert list(SyncRun.objects.values_list("pk", flat=True)) == [first["run"]]
    waiting = SyncChunk.objects.filter(state=SyncChunk.State.PENDING)
    assert sorted(waiting.values_list("pk", flat=True)) == sorted(first["parts"])


@pytest.mark.django_db
def test_a_crashed_run_does_not_block_the_next(sandbox: KeepitSandbox, settings: Settings) -> None:
    connection = connect(sandbox, settings)
    long_ago = sandbox.clock.now_datetime() - timedelta(minutes=30)
    crashed = SyncRun.objects.create(
        connection=connection, started_at=long_ago, heartbeat_at=long_ago
    )
    run = sync(connection, sandbox)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED
    crashed.refresh_from_db()
    assert crashed.outcome == SyncRun.Outcome.ABANDONED
    assert "stopped" in crashed.error
    # A live run (recent heartbeat) still blocks.
    SyncRun.objects.create(
        connection=connection,
        started_at=sandbox.clock.now_datetime(),
        heartbeat_at=sandbox.clock.now_datetime(),
    )
    with pytest.raises(SyncAlreadyRunning):
        sync(connection, sandbox)


@pytest.mark.django_db
def test_the_query_count_does_not_grow_with_the_number_of_accounts(settings: Settings) -> None:
    counts = []
    for accounts in (5, 40):
        sandbox = make_sandbox(
            accounts=accounts, events_per_account_per_day=0, own_read_audit=False
        )
        try:
            Connection.objects.all().delete()
            Customer.objects.all().delete()
            connection = connect(sandbox, settings)
            with CaptureQueriesContext(db) as first:
                sync(connection, sandbox)
            with CaptureQueriesContext(db) as again:
                sync(connection, sandbox)
            counts.append((len(first.captured_queries), len(again.captured_queries)))
        finally:
            sandbox.stop()
    assert counts[0] == counts[1], counts
    # A first sync: about 70 queries (the account list, one part of accounts, the audit
    # part and their bookkeeping: claims, records, the finish) plus, per 6-hour audit
    # slice, its batch's relaxed commit and its cursor in a savepoint (a test runs inside
    # a transaction).
    assert counts[0][0] < 70 + 2 * (4 * 14 * 24 // 6), counts
    assert counts[0][1] < 60, counts


@pytest.mark.django_db
def test_audit_inserts_take_a_constant_number_of_queries_per_batch(
    sandbox: KeepitSandbox, settings: Settings
) -> None:
    connection = connect(sandbox, settings)
    with CaptureQueriesContext(db) as queries:
        run = sync(connection, sandbox)
    inserts = [q for q in queries.captured_queries if "INSERT INTO backup_audit_events" in q["sql"]]
    # One statement per batch: a slice's records go in batches of up to 1,000, and every
    # slice ends with a (maybe short) batch of its own.
    slices = sandbox.server.methods["PUT"]
    assert len(inserts) <= slices + run.counts["events_seen"] // 1000
    assert len(inserts) < run.counts["events_seen"] / 5


# --- operators --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_keepit_sync_command_prints_a_summary_and_fails_loudly(
    sandbox: KeepitSandbox, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    from django.core.management import CommandError, call_command

    connection = connect(sandbox, settings)
    call_command("keepit_sync", "--connection", str(connection.pk))
    out = capsys.readouterr().out
    assert "Succeeded in" in out
    assert "accounts: 8 seen" in out
    connection.set_secrets({"password": "wrong"})
    connection.config = {**connection.config, "token_login": ""}
    connection.save()
    with pytest.raises(CommandError, match="did not succeed"):
        call_command("keepit_sync", "--connection", str(connection.pk))
    assert "Keepit refused the credentials" in capsys.readouterr().out


@pytest.mark.django_db
def test_keepit_connection_command_adds_tests_lists_and_toggles(
    sandbox: KeepitSandbox,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django.core.management import CommandError, call_command

    settings.KEEPIT_BASE_URL_TEMPLATE = sandbox.base_url_template
    monkeypatch.setenv("KEEPIT_TOKEN_LOGIN", sandbox.config.token_login)
    monkeypatch.setenv("KEEPIT_TOKEN_PASSWORD", sandbox.config.token_password)
    call_command(
        "keepit_connection",
        "add",
        "--name",
        "Keepit US",
        "--enable",
        "--url",
        f"https://us-dc.keepit.com/users/{sandbox.msp.parent.guid}",
    )
    out = capsys.readouterr().out
    assert "Connected to Keepit (us-dc). 8 customer accounts visible" in out
    connection = Connection.objects.get()
    assert connection.enabled
    assert connection.secrets == {"token_password": sandbox.config.token_password}
    call_command("keepit_connection", "list")
    assert "Keepit US" in capsys.readouterr().out
    call_command("keepit_connection", "disable", str(connection.pk))
    connection.refresh_from_db()
    assert not connection.enabled
    call_command("keepit_connection", "test", str(connection.pk))
    assert "Connected to Keepit" in capsys.readouterr().out
    # One Keepit account, one connection: a second is refused, naming the first.
    with pytest.raises(CommandError, match="is already connected as \u201cKeepit US\u201d"):
        call_command(
            "keepit_connection",
            "add",
            "--name",
            "Again",
            "--region",
            "us-dc",
            "--account-guid",
            sandbox.msp.parent.guid,
        )
    connection.delete()
    monkeypatch.setenv("KEEPIT_TOKEN_PASSWORD", "wrong")
    with pytest.raises(CommandError, match="Test connection failed: Keepit refused"):
        call_command(
            "keepit_connection",
            "add",
            "--name",
            "Bad",
            "--region",
            "us-dc",
            "--account-guid",
            sandbox.msp.parent.guid,
        )
    assert Connection.objects.count() == 0
