"""The sync against a Keepit that misbehaves: stopped half-way, hostile answers, odd
credentials, and audit data that arrives before what it refers to."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime, timedelta
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from pytest_django.fixtures import Settings

from alerts import services as alert_services
from alerts.models import Alert
from backups.models import AccountLink, BackupAuditEvent, BackupConnector
from backups.runner import run_sync
from integrations.models import Connection, SyncRun
from keepit.client import AUDIT_PAGE_SIZE
from keepit.provider import KeepitProvider
from keepit_sandbox import KeepitSandbox, SandboxConfig
from tests.conftest import (
    ROOT,
    START,
    connect,
    database_url,
    make_sandbox,
    sandbox_connection,
    subprocess_env,
    sync,
)
from tests.factories import FailedRuleFactory


def window_total(sandbox: KeepitSandbox) -> int:
    """How many records Keepit holds for the first sync's 14-day window."""
    msp = sandbox.msp
    end = sandbox.clock.now()
    _page, total = msp.audit_page(msp.parent.guid, end - 14 * 86400, end, True, 0, 1)
    return total


def stop_after(batches: int, exc: BaseException) -> Any:
    """A progress callback that stops the run after `batches` audit batches, as Celery's
    soft time limit (or a crash) would, at an arbitrary point of the audit log."""
    seen = {"batches": 0}

    def progress(phase: str, done: int, total: int) -> None:
        if phase == "audit events":
            seen["batches"] += 1
            if seen["batches"] > batches:
                raise exc

    return progress


# --- a big first sync always finishes ----------------------------------------------------


@pytest.mark.django_db
def test_a_first_sync_stopped_by_the_time_limit_resumes_where_it_stopped(
    settings: Settings,
) -> None:
    sandbox = make_sandbox(accounts=6, events_per_account_per_day=40, own_read_audit=False)
    try:
        connection = connect(sandbox, settings)
        expected = window_total(sandbox)
        first = run_sync(
            connection,
            now=sandbox.clock.now_datetime(),
            progress=stop_after(20, SoftTimeLimitExceeded()),
        )
        assert first.outcome == SyncRun.Outcome.PARTIAL
        assert first.error.startswith("The sync reached its time limit (1200 s) while reading ")
        assert first.error.endswith(
            "Everything read so far is kept, and the next sync continues from there."
        )
        connection.refresh_from_db()
        cursor = connection.sync_state["audit_cursor"]
        assert START - timedelta(days=14) < connection_cursor(connection) < START
        kept = BackupAuditEvent.objects.count()
        assert 0 < kept < expected
        second = sync(connection, sandbox)
        assert second.outcome == SyncRun.Outcome.SUCCEEDED, second.error
        # Resumed at the last complete slice (minus the overlap), not 14 days back.
        assert second.counts["events_seen"] < expected - kept + 2_000
        assert BackupAuditEvent.objects.count() == expected
        keys = list(BackupAuditEvent.objects.values_list("dedup_key", flat=True))
        assert len(keys) == len(set(keys)) == expected
        assert cursor != connection_cursor(connection).isoformat()
    finally:
        sandbox.stop()


@pytest.mark.django_db
def test_a_run_stopped_inside_a_slice_resumes_at_the_page_it_stopped_at(
    settings: Settings,
) -> None:
    """One slice of thousands of records (slices on a grid of ~11 years: the 14 days fall
    in one): the run stops after two batches, and the next one starts one page before
    where it stopped, not at the slice's start."""
    settings.KEEPIT_AUDIT_SLICE_HOURS = 100_000
    sandbox = make_sandbox(accounts=6, events_per_account_per_day=120, own_read_audit=False)
    try:
        connection = connect(sandbox, settings)
        expected = window_total(sandbox)
        assert expected > 8_000
        first = run_sync(
            connection,
            now=sandbox.clock.now_datetime(),
            progress=stop_after(2, SoftTimeLimitExceeded()),
        )
        assert first.outcome == SyncRun.Outcome.PARTIAL
        connection.refresh_from_db()
        (resume,) = connection.sync_state["audit_resume"].values()
        assert resume["offset"] >= 2_000
        assert "audit_cursor" not in connection.sync_state  # the slice is not complete
        kept = BackupAuditEvent.objects.count()
        assert kept >= 2_000
        puts_before = sandbox.server.methods["PUT"]
        second = sync(connection, sandbox)
        assert second.outcome == SyncRun.Outcome.SUCCEEDED, second.error
        # It re-read one page of what it had (and the usual hour of overlap at the end),
        # not the slice from its start.
        missing = expected - kept
        page = AUDIT_PAGE_SIZE
        assert missing + page <= second.counts["events_seen"] < missing + page + 100
        assert BackupAuditEvent.objects.count() == expected
        # The sandbox serves two records fewer than a page, as Keepit does.
        assert sandbox.server.methods["PUT"] - puts_before <= (missing + page) // (page - 2) + 3
        connection.refresh_from_db()
        assert "audit_resume" not in connection.sync_state
    finally:
        sandbox.stop()


@pytest.mark.django_db
def test_a_time_limit_in_the_inventory_stops_the_requests_at_once(
    settings: Settings,
) -> None:
    """Stopped while the accounts are being read: the requests not yet sent are dropped
    (not sent until the hard limit kills the worker), and the run ends partial."""
    settings.KEEPIT_HTTP_CONCURRENCY = 2
    sandbox = make_sandbox(accounts=30, own_read_audit=False)
    sandbox.server.latency = 0.01
    try:
        connection = connect(sandbox, settings)

        def progress(phase: str, done: int, total: int) -> None:
            if phase == "accounts" and done >= 10:
                raise SoftTimeLimitExceeded()

        run = run_sync(connection, now=sandbox.clock.now_datetime(), progress=progress)
        assert run.outcome == SyncRun.Outcome.PARTIAL
        assert "while reading the customer accounts" in run.error
        # Per account: connectors, summary, health, job counts (today and one past day),
        # seats. The requests it did send are recorded (the audit log's too, read at the
        # same time); the accounts' requests still queued were never sent.
        per_account = 6
        accounts_routes = ("devices", "summary", "health", "jobs", "seats")
        served = sandbox.server.requests_by_route()
        for_accounts = sum(served[route] for route in accounts_routes) - 1  # - violations
        assert 10 * 4 <= for_accounts < 30 * per_account / 2
        assert run.http_requests <= sandbox.server.requests_served
        assert run.counts["accounts_seen"] == 30
        connection.refresh_from_db()
        assert connection.partial_runs_in_row == 0  # it ran out of time; it did not fail
        # The accounts were not stored, and it says so: the data shown is not this run's,
        # so "last successful sync" stays where it was (the sync-stale check sees a sync
        # that never fits in its time limit).
        assert "before these accounts could be stored" in run.error
        assert connection.last_success_at is None
        assert not BackupConnector.objects.filter(connection=connection).exists()
    finally:
        sandbox.stop()


def connection_cursor(connection: Connection) -> Any:
    connection.refresh_from_db()
    return datetime.fromisoformat(connection.sync_state["audit_cursor"])


@pytest.mark.django_db
def test_a_sync_that_crashes_half_way_says_so_and_the_next_one_continues(
    settings: Settings,
) -> None:
    sandbox = make_sandbox(accounts=6, events_per_account_per_day=40, own_read_audit=False)
    try:
        connection = connect(sandbox, settings)
        expected = window_total(sandbox)
        crashed = run_sync(
            connection,
            now=sandbox.clock.now_datetime(),
            progress=stop_after(5, RuntimeError("disk full")),
        )
        assert crashed.outcome == SyncRun.Outcome.FAILED
        assert crashed.error.startswith(
            "The sync stopped on an unexpected error (RuntimeError) while reading the audit log ("
        ), crashed.error
        assert "What it read before is kept and the next sync continues" in crashed.error
        assert "Traceback" not in crashed.error
        # What it stored is kept with where to go on: the cursor past the slices complete
        # from the window's start, or, while the oldest slice was still being read (8 are
        # read at once, and any may finish first), the pages to resume each slice at.
        kept = BackupAuditEvent.objects.count()
        assert 0 < kept < expected
        connection.refresh_from_db()
        state = connection.sync_state
        assert state.get("audit_resume") or "audit_cursor" in state, state
        if "audit_cursor" in state:
            assert START - timedelta(days=14) < connection_cursor(connection) < START
        again = sync(connection, sandbox)
        assert again.outcome == SyncRun.Outcome.SUCCEEDED
        assert BackupAuditEvent.objects.count() == expected
    finally:
        sandbox.stop()


# --- data that must not go missing -------------------------------------------------------


@pytest.mark.django_db
def test_a_failure_logged_while_its_account_could_not_be_read_still_alerts(
    sandbox: KeepitSandbox, settings: Settings
) -> None:
    connection = connect(sandbox, settings)
    FailedRuleFactory.create(name="Failed", recipients="t@msp.example")
    outage = sandbox.msp.accounts[1]
    subject = next(c for c in sandbox.msp.connectors[outage.guid] if c.type != "system")
    sandbox.msp.log(subject, at=START - timedelta(hours=2), message="Backup job failed: E_LOGIN")
    sandbox.server.failing_accounts.add(outage.guid)
    first = sync(connection, sandbox)
    assert first.outcome == SyncRun.Outcome.PARTIAL
    stored = BackupAuditEvent.objects.get(message="Backup job failed: E_LOGIN")
    assert stored.connector_id is None  # its connector is not known yet
    assert not BackupConnector.objects.filter(external_id=subject.guid).exists()
    alert_services.evaluate(now=START)
    assert not Alert.objects.filter(connector__external_id=subject.guid).exists()
    sandbox.server.failing_accounts.clear()
    second = sync(connection, sandbox)
    assert second.outcome == SyncRun.Outcome.SUCCEEDED
    stored.refresh_from_db()
    connector = BackupConnector.objects.get(external_id=subject.guid)
    assert stored.connector_id == connector.pk
    assert second.counts["events_relinked"] >= 1
    opened = alert_services.evaluate(now=START).opened
    alert = next(a for a in opened if a.connector_id == connector.pk)
    assert alert.kind == Alert.Kind.BACKUP_FAILED
    assert "Backup job failed: E_LOGIN" in alert.detail


@pytest.mark.django_db
@pytest.mark.parametrize("fault", ["huge:50", "huge-stream:50"])
def test_an_oversized_inventory_answer_is_refused_and_nothing_of_it_is_stored(
    sandbox: KeepitSandbox, settings: Settings, fault: str
) -> None:
    connection = connect(sandbox, settings)
    sandbox.inject(fault, route="devices")
    run = sync(connection, sandbox)
    assert run.outcome == SyncRun.Outcome.PARTIAL
    assert "larger than the 20 MB limit" in run.error
    assert "nothing from it was stored (KEEPIT_MAX_RESPONSE_MB)" in run.error
    assert len(run.failed_accounts) == 1
    assert not BackupConnector.objects.filter(
        account_link__external_id=run.failed_accounts[0]
    ).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fault", "sentence"),
    [
        ("huge-stream:50", "larger than the 20 MB limit"),
        (
            "overfull",
            f"Keepit sent {AUDIT_PAGE_SIZE + 1} audit records for a page of {AUDIT_PAGE_SIZE}",
        ),
    ],
)
def test_a_hostile_audit_page_ends_the_run_partial_and_none_of_it_is_stored(
    sandbox: KeepitSandbox, settings: Settings, fault: str, sentence: str
) -> None:
    settings.KEEPIT_AUDIT_CONCURRENCY = 1  # the oldest slice asks first: it gets the fault
    connection = connect(sandbox, settings)
    sandbox.inject(fault, route="audit")
    run = sync(connection, sandbox)
    assert run.outcome == SyncRun.Outcome.PARTIAL
    assert run.error.startswith("The audit log could not be read completely: ")
    assert sentence in run.error
    # The bad answer was the very first audit page: nothing is stored, the cursor stays.
    assert BackupAuditEvent.objects.count() == 0
    connection.refresh_from_db()
    assert "audit_cursor" not in connection.sync_state
    # The next sync reads it all.
    assert sync(connection, sandbox).outcome == SyncRun.Outcome.SUCCEEDED
    assert BackupAuditEvent.objects.count() > 0


PEAK_OF_CHILD = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
_pid, status, usage = os.wait4(child.pid, 0)
child.returncode = os.waitstatus_to_exitcode(status)
print()  # after whatever the sync printed last
print("peak", child.returncode, usage.ru_maxrss, flush=True)
"""


@pytest.mark.django_db(transaction=True)
def test_peak_memory_stays_under_300_mb_when_keepit_sends_50_mb() -> None:
    """`manage.py keepit_sync` in its own process against a sandbox whose audit answer
    is 50 MB (streamed, without a Content-Length): the answer is refused at the cap while
    it arrives, so the process never holds it."""
    sandbox = KeepitSandbox(
        SandboxConfig(accounts=3, events_per_account_per_day=2), start=START, speed=0
    ).start()
    try:
        connection = sandbox_connection(sandbox)
        peaks = {}
        for cap in ("20", "200"):
            sandbox.inject("huge-stream:50", route="audit")
            env = subprocess_env(
                DATABASE_URL=database_url(),
                KEEPIT_BASE_URL_TEMPLATE=sandbox.base_url_template,
                KEEPIT_MAX_RESPONSE_MB=cap,
                KEEPIT_MAX_ATTEMPTS="1",
            )
            # Started by a small Python in between, which waits for it and prints its peak:
            # a process this one starts directly begins its high-water mark at this
            # process's own peak (the kernel keeps the spawning image's across exec), and
            # a test suite's process may be the biggest in the tree.
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    PEAK_OF_CHILD,
                    sys.executable,
                    "manage.py",
                    "keepit_sync",
                    "--connection",
                    str(connection.pk),
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            answer, _ = process.communicate()
            output = answer.decode()
            said = re.findall(r"^peak (-?\d+) (\d+)$", output, flags=re.MULTILINE)
            assert said, output
            returncode, peak_kb = (int(number) for number in said[-1])
            peaks[cap] = peak_kb / 1024
            if cap == "20":
                assert returncode != 0, output
                assert "larger than the 20 MB limit" in output, output
        print(
            f"\npeak RSS of keepit_sync with a 50 MB audit answer: {peaks['20']:.0f} MB with "
            f"the 20 MB cap (answer refused), {peaks['200']:.0f} MB with a 200 MB cap"
        )
        assert peaks["20"] < 300
        assert peaks["20"] < peaks["200"]
    finally:
        sandbox.stop()


# --- credentials and errors ----------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("password", "token_password"),
    [("pæsswørd-Ø1", "tøken-Æ2"), ("€uro-Pass", "€-token-£")],
)
def test_non_ascii_credentials_work_for_test_connection_and_sync(
    settings: Settings, password: str, token_password: str
) -> None:
    sandbox = make_sandbox(password=password, token_password=token_password)
    try:
        settings.KEEPIT_BASE_URL_TEMPLATE = sandbox.base_url_template
        for token in (False, True):
            config = {
                "region": "us-dc",
                "account_guid": sandbox.msp.parent.guid,
                "username": sandbox.config.username,
                "token_login": sandbox.config.token_login if token else "",
            }
            secrets = {"password": password, "token_password": token_password if token else ""}
            result = KeepitProvider().test_connection(config=config, secrets=secrets)
            assert result.ok, result.message
        connection = sandbox_connection(sandbox)
        assert sync(connection, sandbox).outcome == SyncRun.Outcome.SUCCEEDED
    finally:
        sandbox.stop()


@pytest.mark.django_db
def test_an_unexpected_error_in_a_sync_becomes_a_sentence_on_the_run(
    sandbox: KeepitSandbox, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backups.ingest import Ingest

    connection = connect(sandbox, settings)

    def explode(*args: Any, **kwargs: Any) -> None:
        raise KeyError("device")

    monkeypatch.setattr(Ingest, "_apply_connectors", explode)
    run = sync(connection, sandbox)  # does not raise
    assert run.outcome == SyncRun.Outcome.FAILED
    assert run.error == (
        "The sync stopped on an unexpected error (KeyError) while reading the connectors "
        "and backup statuses. What it read before is kept and the next sync continues from "
        "there; if this happens again, send the worker log of this time to support."
    )
    connection.refresh_from_db()
    assert connection.last_error == run.error


# --- Vectis's own reads --------------------------------------------------------------------


@pytest.mark.django_db
def test_own_reads_are_counted_apart_and_can_be_left_out(
    sandbox: KeepitSandbox, settings: Settings
) -> None:
    connection = connect(sandbox, settings)
    sync(connection, sandbox)
    # A second later nothing happened in Keepit, except that it logged our first sync.
    sandbox.advance(timedelta(seconds=1))
    again = sync(connection, sandbox)
    assert again.counts["events_added"] == 0
    assert again.counts["own_reads_added"] > 0
    settings.KEEPIT_STORE_OWN_READS = False
    stored = BackupAuditEvent.objects.filter(is_own_read=True).count()
    sandbox.advance(timedelta(minutes=15))
    third = sync(connection, sandbox)
    assert third.counts["own_reads_added"] == 0
    assert third.counts["own_reads_skipped"] > 0
    assert BackupAuditEvent.objects.filter(is_own_read=True).count() == stored


# --- excluded means excluded --------------------------------------------------------------


@pytest.mark.django_db
def test_an_excluded_account_is_not_read_so_it_can_never_make_a_sync_partial(
    settings: Settings,
) -> None:
    """An excluded account stays listed (its link and decision stay), but none of its
    data is asked for: a failure there could only make every run partial and, three in a
    row, Degraded — for an account the MSP said is not theirs to watch."""
    sandbox = make_sandbox(accounts=3, own_read_audit=False)
    try:
        connection = connect(sandbox, settings)
        sync(connection, sandbox)
        link = AccountLink.objects.filter(connection=connection).order_by("external_id").first()
        assert link is not None
        connectors_before = set(
            BackupConnector.objects.filter(account_link=link).values_list("pk", "updated_at")
        )
        assert connectors_before
        AccountLink.objects.filter(pk=link.pk).update(state=AccountLink.State.EXCLUDED)
        sandbox.server.request_log.clear()
        run = sync(connection, sandbox)
        assert run.outcome == SyncRun.Outcome.SUCCEEDED
        asked = [entry.path for entry in sandbox.server.request_log]
        assert not [path for path in asked if f"/users/{link.external_id}/" in path]
        assert run.counts["accounts_excluded"] == 1
        # The other accounts were read as usual.
        others = AccountLink.objects.filter(connection=connection).exclude(pk=link.pk)
        for other in others:
            assert any(f"/users/{other.external_id}/devices" in path for path in asked)
        # Its connectors stay as they were; the link keeps the admin's decision.
        assert (
            set(BackupConnector.objects.filter(account_link=link).values_list("pk", "updated_at"))
            == connectors_before
        )
        link.refresh_from_db()
        assert link.state == AccountLink.State.EXCLUDED
    finally:
        sandbox.stop()


@pytest.mark.django_db
def test_slices_read_at_once_never_skip_or_repeat_an_event_when_one_fails(
    settings: Settings,
) -> None:
    """Eight slices in flight; the first audit request fails for good, a second later,
    while the slices after it complete. The cursor moves only over the slices complete
    from the window's start, so the next sync reads what was missing and every record is
    stored exactly once."""
    settings.KEEPIT_AUDIT_CONCURRENCY = 8
    sandbox = make_sandbox(accounts=6, events_per_account_per_day=40, own_read_audit=False)
    sandbox.server.latency = 0.02
    try:
        connection = connect(sandbox, settings)
        settings.KEEPIT_MAX_ATTEMPTS = 1
        expected = window_total(sandbox)
        sandbox.inject("slow:1:503", route="audit")
        first = sync(connection, sandbox)
        assert first.outcome == SyncRun.Outcome.PARTIAL
        assert first.error.startswith("The audit log could not be read completely: ")
        assert sandbox.server.peak_in_flight["audit"] >= 4  # really read at once
        kept = BackupAuditEvent.objects.count()
        assert 0 < kept < expected
        connection.refresh_from_db()
        cursor = connection.sync_state.get("audit_cursor")
        if cursor is not None:  # never past a record that is not stored
            newest_contiguous = datetime.fromisoformat(cursor)
            assert newest_contiguous < START
        second = sync(connection, sandbox)
        assert second.outcome == SyncRun.Outcome.SUCCEEDED, second.error
        keys = list(BackupAuditEvent.objects.values_list("dedup_key", flat=True))
        assert len(keys) == len(set(keys)) == expected
        connection.refresh_from_db()
        assert connection.sync_state["audit_cursor"] == START.isoformat()
        assert "audit_resume" not in connection.sync_state
    finally:
        sandbox.stop()
