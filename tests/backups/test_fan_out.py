"""A sync in parts over real Celery workers on Redis (issue "Sync at 20,000 accounts"):
two workers share one connection's parts, a part whose worker dies is queued again (and
fails, naming its accounts, after its attempts), and a first sync that keeps reaching the
time limit completes over several runs with every event stored exactly once."""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from backups.models import BackupAuditEvent, BackupConnector
from backups.tasks import sync_connection, sync_due_connections
from integrations.models import Connection, SyncChunk, SyncRun
from keepit_sandbox import KeepitSandbox, SandboxConfig
from tests.conftest import celery_worker, sandbox_connection

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def live_sandbox() -> Iterator[KeepitSandbox]:
    """A sandbox on real time (the workers sync at the real now), without own-read audit
    records, so the audit log holds only what the simulated MSP did."""
    from vectis.celery import app

    app.control.purge()  # no message of an earlier test reaches these workers
    with KeepitSandbox(
        SandboxConfig(accounts=6, events_per_account_per_day=12, own_read_audit=False)
    ) as running:
        yield running


def worker_env(sandbox: KeepitSandbox, **extra: str) -> dict[str, str]:
    return {
        "KEEPIT_BASE_URL_TEMPLATE": sandbox.base_url_template,
        "VECTIS_SYNC_CHUNK_ACCOUNTS": "2",
        "VECTIS_SYNC_HEARTBEAT_SECONDS": "0.5",
        "VECTIS_SYNC_STALE_SECONDS": "2",
        **extra,
    }


def wait_for(condition: Any, *, seconds: float = 60, what: str = "") -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds} s: {what}")


def finished_run(connection: Connection, *, after: int = 0, seconds: float = 90) -> SyncRun:
    def done() -> SyncRun | None:
        return (
            SyncRun.objects.filter(connection=connection, pk__gt=after)
            .exclude(outcome=SyncRun.Outcome.RUNNING)
            .first()
        )

    run: SyncRun = wait_for(done, seconds=seconds, what="the run to finish")
    return run


def connector_total(sandbox: KeepitSandbox) -> int:
    """Backup connectors the sandbox MSP has (Keepit's `system` devices are not)."""
    return sum(1 for items in sandbox.msp.connectors.values() for c in items if c.type != "system")


def audit_total(sandbox: KeepitSandbox, start: float, end: float) -> int:
    msp = sandbox.msp
    _page, total = msp.audit_page(msp.parent.guid, start, end, True, 0, 1)
    return int(total)


def test_two_workers_share_the_parts_of_one_connection(
    live_sandbox: KeepitSandbox, settings: SettingsWrapper
) -> None:
    settings.KEEPIT_BASE_URL_TEMPLATE = live_sandbox.base_url_template
    live_sandbox.server.latency = 0.1  # parts take long enough for both workers to take some
    connection = sandbox_connection(live_sandbox)
    env = worker_env(live_sandbox)
    with celery_worker("fan-a", **env), celery_worker("fan-b", **env):
        sync_connection.delay(connection.pk, "manual")
        run = finished_run(connection)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    parts = list(run.chunks.order_by("number"))
    # The account list, three parts of two accounts, the audit log: all done.
    assert [(p.kind, p.accounts, p.state) for p in parts] == [
        ("plan", 6, "done"),
        ("accounts", 2, "done"),
        ("accounts", 2, "done"),
        ("accounts", 2, "done"),
        ("audit", 0, "done"),
    ]
    assert len({p.worker for p in parts[1:]}) == 2  # both workers did parts
    expected = connector_total(live_sandbox)
    assert BackupConnector.objects.filter(connection=connection).count() == expected
    assert run.counts["connectors_added"] == expected
    assert run.counts["accounts_seen"] == 6
    assert run.counts["events_added"] == BackupAuditEvent.objects.count() > 0
    assert run.http_requests == sum(p.http_requests for p in parts)


@pytest.mark.parametrize("attempts", [2, 1])
def test_a_part_whose_worker_dies_is_queued_again_or_named_when_out_of_attempts(
    live_sandbox: KeepitSandbox, settings: SettingsWrapper, attempts: int
) -> None:
    """The first part of accounts hangs and its worker is killed. The watchdog (the beat
    tick) sees its heartbeat stop: with attempts left it queues the part again and a new
    worker completes the run; without, the part fails and the run ends partial, naming
    the part's accounts."""
    settings.KEEPIT_BASE_URL_TEMPLATE = live_sandbox.base_url_template
    settings.VECTIS_SYNC_HEARTBEAT_SECONDS = 0.5
    settings.VECTIS_SYNC_STALE_SECONDS = 2
    settings.VECTIS_SYNC_CHUNK_ATTEMPTS = attempts
    connection = sandbox_connection(live_sandbox)
    env = worker_env(live_sandbox)
    live_sandbox.inject("slow:20", route="devices")  # the first account read hangs
    with celery_worker("doomed", **env) as doomed:
        sync_connection.delay(connection.pk, "manual")
        hanging = wait_for(
            lambda: SyncChunk.objects.filter(
                kind=SyncChunk.Kind.ACCOUNTS, state=SyncChunk.State.RUNNING
            ).first(),
            what="a part of accounts to start",
        )
        time.sleep(0.5)
        doomed.kill()  # SIGKILL: no goodbye, no cleanup
        doomed.wait(timeout=10)
    time.sleep(2.5)  # past VECTIS_SYNC_STALE_SECONDS
    tended = sync_due_connections.apply().get()
    if attempts > 1:
        assert hanging.pk in tended["requeued"]
    else:
        assert hanging.pk not in tended["requeued"]
    with celery_worker("rescuer", **env):
        run = finished_run(connection)
    hanging.refresh_from_db()
    if attempts > 1:
        assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
        assert (hanging.state, hanging.attempts) == (SyncChunk.State.DONE, 2)
        assert BackupConnector.objects.filter(connection=connection).count() == (
            connector_total(live_sandbox)
        )
        return
    assert run.outcome == SyncRun.Outcome.PARTIAL
    assert hanging.state == SyncChunk.State.FAILED
    assert "The worker reading this part stopped 1 time(s)" in hanging.error
    # Its two accounts are named; the other parts were read and stored.
    assert sorted(run.failed_accounts) == sorted(hanging.account_ids)
    links = connection.account_links.filter(external_id__in=hanging.account_ids)
    for link in links:
        assert f"{link.company_name} ({link.external_id})" in run.error
    assert "2 account(s) could not be read" in run.error
    lost = sum(
        1
        for account in hanging.account_ids
        for c in live_sandbox.msp.connectors[account]
        if c.type != "system"
    )
    assert BackupConnector.objects.filter(connection=connection).count() == (
        connector_total(live_sandbox) - lost
    )


def test_a_first_sync_that_keeps_reaching_the_time_limit_completes_over_three_runs(
    live_sandbox: KeepitSandbox, settings: SettingsWrapper
) -> None:
    """Each audit page takes 1.2 s and a task may run 3 s (Celery's soft time limit): the
    audit part of the first and second runs stops after two slices, each run continuing
    where the last stopped, and the third completes — every record stored exactly once."""
    settings.KEEPIT_BASE_URL_TEMPLATE = live_sandbox.base_url_template
    connection = sandbox_connection(live_sandbox)
    env = worker_env(
        live_sandbox,
        CELERY_TASK_SOFT_TIME_LIMIT="3",
        CELERY_TASK_TIME_LIMIT="20",
        KEEPIT_AUDIT_CONCURRENCY="1",
        KEEPIT_AUDIT_SLICE_HOURS="72",
        KEEPIT_AUDIT_OVERLAP_MINUTES="0",
        VECTIS_SYNC_CHUNK_ACCOUNTS="500",
    )
    live_sandbox.inject(*["slow:1.2"] * 40, route="audit")
    runs: list[SyncRun] = []
    with celery_worker("limited", pool="prefork", **env):
        for _ in range(3):
            sync_connection.delay(connection.pk, "manual")
            runs.append(finished_run(connection, after=runs[-1].pk if runs else 0))
            if runs[-1].outcome == SyncRun.Outcome.SUCCEEDED:
                break
    assert [run.outcome for run in runs] == ["partial", "partial", "succeeded"], [
        run.error for run in runs
    ]
    for run in runs[:2]:
        assert run.error.startswith("The sync reached its time limit (3 s) while reading ")
        assert "Everything read so far is kept, and the next sync continues" in run.error
        audit = run.chunks.get(kind=SyncChunk.Kind.AUDIT)
        assert audit.stopped_early
        assert audit.counts["events_added"] > 0
    # Every record of the window from the first run's start to the last run's is stored,
    # once: nothing skipped, nothing repeated.
    # Keepit's filter takes whole seconds (format_time): the sync asks for
    # [floor(start), floor(end)), so the expected count must too — with the fractions,
    # an event in the first run's first second was stored but not expected (flaky).
    first, last = runs[0].started_at, runs[-1].started_at
    expected = audit_total(
        live_sandbox,
        math.floor((first - timedelta(days=14)).timestamp()),
        math.floor(last.timestamp()),
    )
    keys = list(BackupAuditEvent.objects.values_list("dedup_key", flat=True))
    assert len(keys) == len(set(keys)) == expected
    assert sum(run.counts["events_added"] for run in runs) == expected


def test_a_sync_in_one_process_reads_the_audit_log_in_a_second_one(
    live_sandbox: KeepitSandbox, settings: SettingsWrapper
) -> None:
    """`keepit_sync` (run_sync) with nothing uncommitted: the accounts are read here and
    the audit log by a process of its own (`manage.py sync_part`), the request budget
    split between them; the run adds up both."""
    import os

    from backups.runner import run_sync

    settings.KEEPIT_BASE_URL_TEMPLATE = live_sandbox.base_url_template
    settings.KEEPIT_HTTP_CONCURRENCY = 8
    connection = sandbox_connection(live_sandbox)
    run = run_sync(connection)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    parts = {p.kind: p for p in run.chunks.all()}
    here = f":{os.getpid()}"
    assert parts["accounts"].worker.endswith(here)
    assert not parts["audit"].worker.endswith(here)  # another process
    assert parts["audit"].counts["events_added"] == BackupAuditEvent.objects.count() > 0
    assert run.http_requests == sum(p.http_requests for p in parts.values())
    assert run.http_requests == live_sandbox.server.requests_served


def audit_part_ended() -> bool:
    return SyncChunk.objects.filter(kind=SyncChunk.Kind.AUDIT, state=SyncChunk.State.DONE).exists()


def test_the_audit_process_keeps_to_its_share_of_the_budget_while_the_accounts_are_read(
    settings: SettingsWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The accounts are still being read (held here until the audit part has ended): the
    audit process never has more than its quarter of the budget in flight."""
    from backups import runner

    read = runner._Part.read

    def read_after_the_audit_log(self: runner._Part) -> Any:
        wait_for(audit_part_ended, what="the audit part to end")
        return read(self)

    monkeypatch.setattr(runner._Part, "read", read_after_the_audit_log)
    with KeepitSandbox(
        SandboxConfig(accounts=2, events_per_account_per_day=12, own_read_audit=False),
        latency_ms=30,
    ) as sandbox:
        settings.KEEPIT_BASE_URL_TEMPLATE = sandbox.base_url_template
        settings.KEEPIT_HTTP_CONCURRENCY = 8
        run = runner.run_sync(sandbox_connection(sandbox))
        assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
        assert sandbox.server.peak_in_flight["audit"] == 2


def test_once_the_accounts_are_read_the_audit_process_gets_the_whole_budget(
    settings: SettingsWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small MSP with a long audit log: its accounts are read (here once the audit
    process has made a few requests with its quarter) long before the audit log, which
    then goes on with the connection's whole budget."""
    from backups import runner

    read = runner._Part.read

    with KeepitSandbox(
        SandboxConfig(accounts=2, events_per_account_per_day=12, own_read_audit=False),
        latency_ms=30,
    ) as sandbox:

        def read_once_the_audit_log_is_under_way(self: runner._Part) -> Any:
            wait_for(
                lambda: sandbox.server.requests_by_route().get("audit", 0) >= 4,
                what="the audit process's first requests",
            )
            return read(self)

        monkeypatch.setattr(runner._Part, "read", read_once_the_audit_log_is_under_way)
        settings.KEEPIT_BASE_URL_TEMPLATE = sandbox.base_url_template
        settings.KEEPIT_HTTP_CONCURRENCY = 8
        run = runner.run_sync(sandbox_connection(sandbox))
        assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
        assert 2 < sandbox.server.peak_in_flight["audit"] <= 8
        assert BackupAuditEvent.objects.count() == run.counts["events_added"] > 0


def test_each_part_links_the_events_of_its_connectors_once_they_are_committed(
    live_sandbox: KeepitSandbox, settings: SettingsWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audit log is stored beside the parts (here all of it first): each part, once
    its connectors are committed, links the events stored before them — the run's final
    relink has nothing left to do."""
    from django.db import connection as db

    from backups import runner
    from backups.ingest import Ingest

    settings.KEEPIT_BASE_URL_TEMPLATE = live_sandbox.base_url_template
    settings.VECTIS_SYNC_CHUNK_ACCOUNTS = 2
    read = runner._Part.read
    link = Ingest.link_added_connectors
    in_transaction: list[bool] = []

    def read_after_the_audit_log(self: runner._Part) -> Any:
        wait_for(audit_part_ended, what="the audit part to end")
        return read(self)

    def linking(self: Ingest) -> None:
        in_transaction.append(db.in_atomic_block)
        link(self)

    monkeypatch.setattr(runner._Part, "read", read_after_the_audit_log)
    monkeypatch.setattr(Ingest, "link_added_connectors", linking)
    run = runner.run_sync(sandbox_connection(live_sandbox))
    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    assert in_transaction == [False] * 3  # three parts, each after its commit
    with_connector = BackupAuditEvent.objects.exclude(connector_external_id="")
    assert with_connector.filter(connector__isnull=True).count() == 0
    parts = run.chunks.filter(kind=SyncChunk.Kind.ACCOUNTS)
    linked_by_parts = sum(p.counts["events_relinked"] for p in parts)
    assert linked_by_parts == with_connector.count() > 0
    assert run.counts["events_relinked"] == linked_by_parts  # none left for the end


def test_a_link_that_fails_leaves_its_part_stored_and_the_events_to_the_final_relink(
    live_sandbox: KeepitSandbox, settings: SettingsWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Linking a part's events after its commit is an optimisation: a database error
    there is logged, the part stays stored, and the run's final relink links them."""
    from django.db import DatabaseError

    from backups import runner
    from backups.ingest import Ingest

    def failing(self: Ingest) -> None:
        raise DatabaseError("canceling statement due to statement timeout")

    settings.KEEPIT_BASE_URL_TEMPLATE = live_sandbox.base_url_template
    settings.VECTIS_SYNC_CHUNK_ACCOUNTS = 2
    monkeypatch.setattr(Ingest, "link_added_connectors", failing)
    read = runner._Part.read

    def read_after_the_audit_log(self: runner._Part) -> Any:
        wait_for(audit_part_ended, what="the audit part to end")
        return read(self)

    monkeypatch.setattr(runner._Part, "read", read_after_the_audit_log)
    run = runner.run_sync(sandbox_connection(live_sandbox))
    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    parts = run.chunks.filter(kind=SyncChunk.Kind.ACCOUNTS)
    assert [(p.state, p.stored) for p in parts] == [(SyncChunk.State.DONE, True)] * 3
    with_connector = BackupAuditEvent.objects.exclude(connector_external_id="")
    assert with_connector.filter(connector__isnull=True).count() == 0
    assert run.counts["events_relinked"] == with_connector.count() > 0


def test_what_slips_past_the_parts_links_is_linked_once_the_audit_part_has_ended(
    live_sandbox: KeepitSandbox, settings: SettingsWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event stored between a part's commit and the audit ingest's next look-up of
    connectors is missed by that part's link (here: the first part links nothing). Once
    the audit process has exited, the next part stored links it, in its own thread: the
    run's finish has nothing left to relink and does not."""
    from backups import runner
    from backups.ingest import Ingest

    settings.KEEPIT_BASE_URL_TEMPLATE = live_sandbox.base_url_template
    settings.VECTIS_SYNC_CHUNK_ACCOUNTS = 2
    read = runner._Part.read
    link = Ingest.link_added_connectors
    relink = Ingest.relink
    links: list[int] = []
    relinks: list[str] = []

    def read_after_the_audit_part(self: runner._Part) -> Any:
        wait_for(audit_part_ended, what="the audit part to end")
        return read(self)

    def first_link_misses(self: Ingest) -> None:
        links.append(len(links))
        if len(links) > 1:
            link(self)
        else:
            self.connectors_added = {}

    def any_relink(self: Ingest, **kwargs: Any) -> None:
        relinks.append(threading.current_thread().name)
        relink(self, **kwargs)

    monkeypatch.setattr(runner._Part, "read", read_after_the_audit_part)
    monkeypatch.setattr(Ingest, "link_added_connectors", first_link_misses)
    monkeypatch.setattr(Ingest, "relink", any_relink)
    run = runner.run_sync(sandbox_connection(live_sandbox))
    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    with_connector = BackupAuditEvent.objects.exclude(connector_external_id="")
    assert with_connector.filter(connector__isnull=True).count() == 0
    first = run.chunks.filter(kind=SyncChunk.Kind.ACCOUNTS).order_by("number").first()
    assert first is not None
    assert first.counts["events_relinked"] > 0  # by the link after the audit process
    assert run.counts["events_relinked"] == with_connector.count() > 0
    # Once, by the first part stored after the audit part ended; never by the finish.
    assert relinks == [f"sync-store-part-{first.number}"]


def test_parts_stored_while_the_audit_log_is_still_stored_leave_the_relink_to_the_finish(
    live_sandbox: KeepitSandbox, settings: SettingsWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audit process is slow here (its first answers take 3 s): every part is stored
    before it has ended, so an event it stores later may still slip past the parts' links.
    No part relinks early; the finish does (here in the audit process: the last part to
    end finishes the run)."""
    from backups import runner
    from backups.ingest import Ingest

    settings.KEEPIT_BASE_URL_TEMPLATE = live_sandbox.base_url_template
    settings.VECTIS_SYNC_CHUNK_ACCOUNTS = 2
    live_sandbox.inject("slow:3", "slow:3", "slow:3", route="audit")
    relink = Ingest.relink
    relinks: list[str] = []
    stored_before_the_audit_part_ended: list[bool] = []
    store = runner._Part.store

    def storing(self: runner._Part, accounts: Any) -> None:
        store(self, accounts)
        stored_before_the_audit_part_ended.append(not audit_part_ended())

    def any_relink(self: Ingest, **kwargs: Any) -> None:
        relinks.append(threading.current_thread().name)
        relink(self, **kwargs)

    monkeypatch.setattr(runner._Part, "store", storing)
    monkeypatch.setattr(Ingest, "relink", any_relink)
    run = runner.run_sync(sandbox_connection(live_sandbox))
    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    assert stored_before_the_audit_part_ended == [True] * 3
    assert not [name for name in relinks if name.startswith("sync-store-part-")]
    with_connector = BackupAuditEvent.objects.exclude(connector_external_id="")
    assert with_connector.filter(connector__isnull=True).count() == 0


def test_a_time_limit_while_a_part_links_its_events_keeps_the_part_stored(
    live_sandbox: KeepitSandbox, settings: SettingsWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's part reaches the time limit after its accounts are committed, while it
    links their audit events: it is recorded as stored (the run says what was kept), not
    as accounts left with the last sync's data."""
    from celery.exceptions import SoftTimeLimitExceeded

    from backups.ingest import Ingest
    from backups.runner import run_part, start_sync

    def stopped(self: Ingest) -> None:
        raise SoftTimeLimitExceeded()

    settings.KEEPIT_BASE_URL_TEMPLATE = live_sandbox.base_url_template
    connection = sandbox_connection(live_sandbox)
    _run, parts, collection = start_sync(connection)
    assert collection is not None
    collection.close()
    monkeypatch.setattr(Ingest, "link_added_connectors", stopped)
    (accounts,) = [p for p in parts if p.kind == SyncChunk.Kind.ACCOUNTS]
    run_part(accounts.pk)
    accounts.refresh_from_db()
    assert (accounts.state, accounts.stored, accounts.stopped_early) == (
        SyncChunk.State.DONE,
        True,
        True,
    )
    assert "Everything read so far is kept" in accounts.error
    assert BackupConnector.objects.count() == connector_total(live_sandbox)


def account_reads(sandbox: KeepitSandbox) -> int:
    """Requests of the accounts' routes the sandbox answered (not the audit log's, which
    a process of its own reads meanwhile)."""
    return sum(n for route, n in sandbox.server.requests_by_route().items() if route != "audit")


def test_a_part_is_stored_while_the_next_one_is_read(
    live_sandbox: KeepitSandbox, settings: SettingsWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run_sync` with the audit log in its own process stores each account part on a
    thread of its own while it reads the next part: the requests do not wait for the
    writes. Every part still ends stored, and the connectors are all there."""
    from backups import runner
    from backups.ingest import Ingest

    settings.KEEPIT_BASE_URL_TEMPLATE = live_sandbox.base_url_template
    settings.VECTIS_SYNC_CHUNK_ACCOUNTS = 2
    settings.VECTIS_SYNC_HEARTBEAT_SECONDS = 0.2
    connection = sandbox_connection(live_sandbox)
    apply_part = Ingest.apply_part
    read = runner._Part.read
    read_meanwhile: list[int] = []
    beaten: list[timedelta] = []
    storing = [threading.Event() for _ in range(3)]

    def slow_apply(self: Ingest, accounts: Any) -> None:
        before = account_reads(live_sandbox)
        storing[len(read_meanwhile)].set()
        time.sleep(1.0)
        read_meanwhile.append(account_reads(live_sandbox) - before)
        apply_part(self, accounts)
        part = SyncChunk.objects.get(
            run__connection=connection,
            kind=SyncChunk.Kind.ACCOUNTS,
            number=len(read_meanwhile),
        )
        assert part.heartbeat_at is not None
        assert part.started_at is not None
        beaten.append(part.heartbeat_at - part.started_at)

    reads = itertools.count()

    def read_once_the_previous_is_being_stored(self: runner._Part) -> Any:
        # Counted by reads, not by stores started: the previous part's storing thread may
        # not have reached its store yet when this read begins.
        number = next(reads)
        if number:  # a part after the first: wait until the previous one's store started
            assert storing[number - 1].wait(timeout=30)
        return read(self)

    monkeypatch.setattr(Ingest, "apply_part", slow_apply)
    monkeypatch.setattr(runner._Part, "read", read_once_the_previous_is_being_stored)
    run = runner.run_sync(connection)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    parts = list(run.chunks.filter(kind=SyncChunk.Kind.ACCOUNTS).order_by("number"))
    assert [(p.state, p.stored) for p in parts] == [(SyncChunk.State.DONE, True)] * 3
    assert BackupConnector.objects.filter(removed_at__isnull=True).count() == connector_total(
        live_sandbox
    )
    # While each part but the last was being stored, the next one's accounts were read.
    assert len(read_meanwhile) == 3
    assert all(reads > 0 for reads in read_meanwhile[:2]), read_meanwhile
    # Each part's heartbeat moved while it was stored (every 0.2 s here), so the watchdog
    # never takes a part of a run done in one process for lost.
    assert all(beat > timedelta(seconds=0.5) for beat in beaten), beaten


def test_a_part_that_fails_while_stored_aside_fails_the_run_naming_it(
    live_sandbox: KeepitSandbox, settings: SettingsWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first part's storing fails (on its own thread) while the second is read: the
    run fails with a sentence about storing, no part is left running, nothing of the
    failed part is half-stored, and the next sync stores everything."""
    from backups.ingest import Ingest
    from backups.runner import run_sync

    settings.KEEPIT_BASE_URL_TEMPLATE = live_sandbox.base_url_template
    settings.VECTIS_SYNC_CHUNK_ACCOUNTS = 2
    connection = sandbox_connection(live_sandbox)
    apply_part = Ingest.apply_part
    calls: list[int] = []

    def failing_apply(self: Ingest, accounts: Any) -> None:
        calls.append(len(accounts))
        apply_part(self, accounts)
        if len(calls) == 1:
            raise RuntimeError("the disk is full")

    monkeypatch.setattr(Ingest, "apply_part", failing_apply)
    run = run_sync(connection)
    assert run.outcome == SyncRun.Outcome.FAILED
    assert run.error.startswith(
        "The sync stopped on an unexpected error (RuntimeError) while reading the "
        "connectors and backup statuses."
    ), run.error
    parts = list(run.chunks.filter(kind=SyncChunk.Kind.ACCOUNTS).order_by("number"))
    assert [p.state for p in parts] == [SyncChunk.State.FAILED] * 3
    assert parts[0].error == run.error
    assert not any(p.stored for p in parts)
    assert not BackupConnector.objects.exists()  # the failed part's writes rolled back

    monkeypatch.setattr(Ingest, "apply_part", apply_part)
    again = run_sync(Connection.objects.get(pk=connection.pk))
    assert again.outcome == SyncRun.Outcome.SUCCEEDED, again.error
    assert BackupConnector.objects.filter(removed_at__isnull=True).count() == connector_total(
        live_sandbox
    )


def run_with_a_failing_store(
    sandbox: KeepitSandbox,
    settings: SettingsWrapper,
    monkeypatch: pytest.MonkeyPatch,
    second_read: BaseException,
) -> SyncRun:
    """A run of three parts whose first part's storing fails (on its own thread, after
    0.5 s) while reading the second raises `second_read`."""
    from backups import runner
    from backups.ingest import Ingest

    settings.KEEPIT_BASE_URL_TEMPLATE = sandbox.base_url_template
    settings.VECTIS_SYNC_CHUNK_ACCOUNTS = 2
    connection = sandbox_connection(sandbox)
    read = runner._Part.read
    storing = threading.Event()

    def failing_apply(self: Ingest, accounts: Any) -> None:
        storing.set()
        time.sleep(0.5)  # still storing when the second read raises
        raise OSError("the disk is full")

    reads: list[int] = []

    def read_then_raise(self: runner._Part) -> Any:
        reads.append(self.chunk.number)
        if len(reads) == 2:
            assert storing.wait(timeout=30)
            raise second_read
        return read(self)

    monkeypatch.setattr(Ingest, "apply_part", failing_apply)
    monkeypatch.setattr(runner._Part, "read", read_then_raise)
    return runner.run_sync(connection)


def store_errors_logged(caplog: pytest.LogCaptureFixture) -> int:
    return sum(1 for r in caplog.records if r.exc_info and "the disk is full" in str(r.exc_info[1]))


def test_a_part_whose_store_fails_while_another_error_stops_the_run_says_its_own_error(
    live_sandbox: KeepitSandbox,
    settings: SettingsWrapper,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first part's storing fails on its own thread while reading the second part
    crashes too: the run fails naming the read's error; the first part says its own
    (not a blank error), and both errors reach the worker log — a store error is never
    swallowed by the crash that came with it."""
    run = run_with_a_failing_store(
        live_sandbox, settings, monkeypatch, RuntimeError("the network card died")
    )
    assert run.outcome == SyncRun.Outcome.FAILED
    assert run.error.startswith("The sync stopped on an unexpected error (RuntimeError)"), run.error
    first, second, third = run.chunks.filter(kind=SyncChunk.Kind.ACCOUNTS).order_by("number")
    assert first.state == second.state == third.state == SyncChunk.State.FAILED
    assert second.error == run.error
    assert first.error.startswith("The sync stopped on an unexpected error (OSError)"), first.error
    assert not first.stored
    assert "the network card died" in caplog.text
    assert store_errors_logged(caplog) == 1, caplog.text


def test_a_store_error_and_the_time_limit_at_once_each_say_what_they_stopped(
    live_sandbox: KeepitSandbox,
    settings: SettingsWrapper,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first part's storing fails on its own thread and the time limit comes while the
    second part is read: the run fails on the store error (logged once, with its
    traceback), the first part says it; the second says the time limit stopped it, and the
    part never started counts as stopped early, not as failed."""
    from celery.exceptions import SoftTimeLimitExceeded

    run = run_with_a_failing_store(live_sandbox, settings, monkeypatch, SoftTimeLimitExceeded())
    assert run.outcome == SyncRun.Outcome.FAILED
    assert run.error.startswith("The sync stopped on an unexpected error (OSError)"), run.error
    first, second, third = run.chunks.filter(kind=SyncChunk.Kind.ACCOUNTS).order_by("number")
    assert (first.state, first.stored, first.error) == (SyncChunk.State.FAILED, False, run.error)
    assert (second.stored, second.stopped_early) == (False, True)
    assert second.error.startswith("The sync reached its time limit"), second.error
    assert (third.state, third.stopped_early) == (SyncChunk.State.DONE, True)
    assert store_errors_logged(caplog) == 1, caplog.text


def test_a_time_limit_between_a_part_stored_aside_and_its_record_keeps_that_part(
    live_sandbox: KeepitSandbox, settings: SettingsWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The time limit comes in the instant after the first part's storing thread ended
    and before the part was recorded: the stop records it after all (stored, done), so
    the next sync does not read those accounts again as if they had been lost."""
    from celery.exceptions import SoftTimeLimitExceeded

    from backups import runner

    settings.KEEPIT_BASE_URL_TEMPLATE = live_sandbox.base_url_template
    settings.VECTIS_SYNC_CHUNK_ACCOUNTS = 2
    connection = sandbox_connection(live_sandbox)
    record = runner.PartResult.record
    limited: list[int] = []

    def record_after_the_limit(self: runner.PartResult, chunk: SyncChunk, **kw: Any) -> bool:
        if chunk.kind == SyncChunk.Kind.ACCOUNTS and chunk.number == 1 and not limited:
            limited.append(chunk.number)
            raise SoftTimeLimitExceeded()
        return record(self, chunk, **kw)

    monkeypatch.setattr(runner.PartResult, "record", record_after_the_limit)
    run = runner.run_sync(connection)
    assert limited == [1]
    assert run.outcome == SyncRun.Outcome.PARTIAL, run.error
    assert run.error.startswith("The sync reached its time limit"), run.error
    first, second, third = run.chunks.filter(kind=SyncChunk.Kind.ACCOUNTS).order_by("number")
    assert (first.state, first.stored, first.stopped_early) == (SyncChunk.State.DONE, True, False)
    assert first.counts["connectors_added"] > 0
    assert (second.stored, second.stopped_early) == (False, True)
    assert (third.stored, third.stopped_early) == (False, True)


def test_a_time_limit_while_a_part_is_stored_aside_keeps_that_part(
    live_sandbox: KeepitSandbox, settings: SettingsWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The time limit comes while the second part is read and the first is still being
    stored on its own thread: the first finishes and counts as stored, the run is partial,
    naming where it stopped."""
    from celery.exceptions import SoftTimeLimitExceeded

    from backups import runner
    from backups.ingest import Ingest

    settings.KEEPIT_BASE_URL_TEMPLATE = live_sandbox.base_url_template
    settings.VECTIS_SYNC_CHUNK_ACCOUNTS = 2
    connection = sandbox_connection(live_sandbox)
    apply_part = Ingest.apply_part
    read = runner._Part.read
    storing = threading.Event()

    def slow_apply(self: Ingest, accounts: Any) -> None:
        storing.set()
        time.sleep(1.0)
        apply_part(self, accounts)

    reads: list[int] = []

    def read_until_the_limit(self: runner._Part) -> Any:
        reads.append(self.chunk.number)
        if len(reads) == 2:  # the second part, once the first is being stored
            assert storing.wait(timeout=30)
            raise SoftTimeLimitExceeded()
        return read(self)

    monkeypatch.setattr(Ingest, "apply_part", slow_apply)
    monkeypatch.setattr(runner._Part, "read", read_until_the_limit)
    run = runner.run_sync(connection)
    assert run.outcome == SyncRun.Outcome.PARTIAL, run.error
    assert run.error.startswith("The sync reached its time limit"), run.error
    first, second, third = run.chunks.filter(kind=SyncChunk.Kind.ACCOUNTS).order_by("number")
    assert (first.state, first.stored, first.stopped_early) == (SyncChunk.State.DONE, True, False)
    assert (second.stored, second.stopped_early) == (False, True)
    assert (third.stored, third.stopped_early) == (False, True)
    stored = BackupConnector.objects.filter(removed_at__isnull=True).count()
    assert stored == first.counts["connectors_added"] > 0


def test_the_last_accounts_of_a_run_go_in_parts_that_halve() -> None:
    """Nothing overlaps the storing of the last part (and the linking of the audit events
    stored before its connectors): it is small. Every account is in exactly one part, no
    part is over the setting, and small settings cut as they always did."""
    from backups.runner import account_part_sizes

    assert account_part_sizes(2000, 500) == [500, 500, 500, 250, 125, 63, 31, 31]
    assert account_part_sizes(2001, 500) == [500, 500, 500, 251, 125, 63, 31, 31]
    assert account_part_sizes(120, 500) == [60, 30, 30]
    assert account_part_sizes(40, 500) == [40]
    assert account_part_sizes(7, 2) == [2, 2, 2, 1]
    assert account_part_sizes(0, 500) == []
    for size in (1, 2, 10, 49, 50, 500):
        for accounts in range(1200):
            sizes = account_part_sizes(accounts, size)
            assert sum(sizes) == accounts
            assert all(1 <= part <= size for part in sizes)
