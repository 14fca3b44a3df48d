"""The sync schedule and the run lifecycle: every interval, never taken over, degraded."""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from alerts import services as alert_services
from alerts.models import Alert
from backups.runner import run_sync
from integrations.lifecycle import (
    SyncAlreadyRunning,
    claim_sync_run,
    finish_sync_run,
    take_due_slots,
)
from integrations.models import Connection, SyncRun
from keepit_sandbox import KeepitSandbox, SandboxConfig
from tests.conftest import ARTIFACTS, ROOT, database_url, sandbox_connection, subprocess_env
from tests.factories import StaleRuleFactory

DEMO_MORNING = datetime(2026, 12, 1, 7, 53, 20, tzinfo=UTC)


@pytest.mark.django_db
def test_a_connection_starts_a_sync_every_interval_through_two_hours_of_beat_ticks(
    settings: Settings,
) -> None:
    """Beat ticks every minute (with a drifting timer); each sync starts a few seconds
    after its tick and takes 40 s. Over two hours the connection syncs every 15 minutes,
    and "next sync at" is always a future time that the next start keeps."""
    settings.VECTIS_SYNC_INTERVAL_MINUTES = 15
    settings.VECTIS_SYNC_TICK_SECONDS = 60
    connection = Connection.objects.create(provider="keepit", name="Keepit US", enabled=True)
    drift = random.Random(7)
    starts: list[datetime] = []
    promised: list[datetime] = []
    with time_machine.travel(DEMO_MORNING, tick=False) as clock:
        for minute in range(121):
            tick = DEMO_MORNING + timedelta(minutes=minute, seconds=drift.uniform(-2, 2))
            clock.move_to(tick)
            for _pk in take_due_slots(now=timezone.now()):
                started = tick + timedelta(seconds=4)  # the worker picks the task up
                clock.move_to(started)
                run = claim_sync_run(connection, trigger="schedule", now=started)
                clock.move_to(started + timedelta(seconds=40))
                finish_sync_run(
                    run, outcome="succeeded", now=timezone.now(), counts={}, http_requests=0
                )
                starts.append(started)
            connection.refresh_from_db()
            # Whatever the moment, the page promises a future sync.
            assert connection.next_sync_at is not None
            assert connection.next_sync_at > timezone.now()
            if not promised or promised[-1] != connection.next_sync_at:
                promised.append(connection.next_sync_at)
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(starts)]
    print(
        f"{len(starts)} syncs in 2 h: "
        + ", ".join(f"{s:%H:%M:%S}" for s in starts)
        + f"; gaps {min(gaps):.0f} to {max(gaps):.0f} s"
    )
    assert len(starts) == 9, [f"{s:%H:%M:%S}" for s in starts]  # 07:53 … 09:53
    assert all(abs(gap - 900) <= 60 for gap in gaps), gaps
    # Each promised time was kept: the next start came at it, within one tick.
    assert len(promised) == len(starts)
    for promise, start in zip(promised, starts[1:], strict=False):
        assert abs((start - promise).total_seconds()) <= 60, (promise, start)


@pytest.mark.django_db
def test_missed_slots_are_skipped_not_run_back_to_back(settings: Settings) -> None:
    settings.VECTIS_SYNC_INTERVAL_MINUTES = 15
    connection = Connection.objects.create(
        provider="keepit", name="Keepit US", enabled=True, next_sync_at=DEMO_MORNING
    )
    # Beat was down for an hour and ten minutes.
    later = DEMO_MORNING + timedelta(minutes=70, seconds=5)
    assert take_due_slots(now=later) == [connection.pk]
    connection.refresh_from_db()
    assert connection.next_sync_at == DEMO_MORNING + timedelta(minutes=75)
    assert take_due_slots(now=later + timedelta(minutes=1)) == []


@pytest.mark.django_db
def test_the_connection_page_says_when_the_next_sync_really_is(
    client: Client, admin_user: object, settings: Settings
) -> None:
    settings.VECTIS_SYNC_INTERVAL_MINUTES = 15
    connection = Connection.objects.create(
        provider="keepit",
        name="Keepit US",
        enabled=True,
        config={"region": "us-dc", "account_guid": "g"},
    )
    client.force_login(admin_user)  # type: ignore[arg-type]
    url = f"/admin/keepit/keepitconnection/{connection.pk}/change/"
    assert "next sync within a minute (every 15 minutes)" in " ".join(
        client.get(url).content.decode().split()
    )
    take_due_slots(now=timezone.now())
    connection.refresh_from_db()
    assert connection.next_sync_at is not None
    html = client.get(url).content.decode()
    assert (
        f'data-testid="next-sync"><time datetime="{connection.next_sync_at.isoformat()}" '
        f'title="{connection.next_sync_at:%Y-%m-%d %H:%M} UTC">in '
    ) in html


def start_process(args: list[str], log_name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = (ARTIFACTS / log_name).open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "vectis", *args],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_beat_and_worker_sync_every_minute_at_a_one_minute_interval(
    worker_sandbox: KeepitSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """celery beat + a celery worker (their own Redis database, so no other worker takes
    the tasks), VECTIS_SYNC_INTERVAL_MINUTES=1 and beat ticking every minute: the second
    scheduled sync starts one minute after the first, not two."""
    from celery import Celery

    ARTIFACTS.mkdir(exist_ok=True)
    broker = "redis://127.0.0.1:6379/14"
    env = subprocess_env(
        DATABASE_URL=database_url(),
        CELERY_BROKER_URL=broker,
        CELERY_RESULT_BACKEND=broker,
        CELERY_TASK_ALWAYS_EAGER="false",
        KEEPIT_BASE_URL_TEMPLATE=worker_sandbox.base_url_template,
        VECTIS_SYNC_INTERVAL_MINUTES="1",
        VECTIS_SYNC_TICK_SECONDS="60",
        KEEPIT_AUDIT_WINDOW_DAYS="1",
    )
    # Celery lets CELERY_BROKER_URL win over any argument: point this process's client at
    # the pair's own database the same way.
    monkeypatch.setenv("CELERY_BROKER_URL", broker)
    control = Celery(broker=broker, set_as_current=False)
    control.control.purge()
    connection = sandbox_connection(worker_sandbox)
    worker = start_process(
        [
            "worker",
            "--pool=solo",
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"beat-{os.getpid()}@%h",
        ],
        "schedule-worker.log",
        env,
    )
    beat = start_process(
        ["beat", "--schedule", str(tmp_path / "beat-schedule"), "--loglevel=INFO"],
        "schedule-beat.log",
        env,
    )
    try:
        # The first tick by hand (beat's own first tick comes a minute after it starts).
        control.send_task("integrations.tasks.sync_due_connections")
        deadline = time.monotonic() + 180
        runs: list[SyncRun] = []
        while time.monotonic() < deadline and len(runs) < 2:
            runs = list(
                SyncRun.objects.filter(connection=connection, trigger="schedule")
                .exclude(outcome="running")
                .order_by("started_at")
            )
            if runs:
                connection.refresh_from_db()
                assert connection.next_sync_at is not None
                assert connection.next_sync_at > timezone.now() - timedelta(seconds=5)
            time.sleep(0.5)
        assert len(runs) >= 2, "beat and the worker did not run two scheduled syncs in 3 min"
        gap = (runs[1].started_at - runs[0].started_at).total_seconds()
        print(f"\nscheduled syncs at a 1-minute interval started {gap:.1f} s apart")
        assert 50 <= gap <= 70, gap
        assert all(run.outcome == SyncRun.Outcome.SUCCEEDED for run in runs[:2])
    finally:
        stop_process(beat)
        stop_process(worker)
        control.control.purge()


@pytest.mark.django_db(transaction=True)
def test_a_slow_keepit_never_makes_a_live_sync_look_abandoned(settings: Settings) -> None:
    """A slow Keepit, one request at a time, whose first answer takes twice the stale
    limit: no request completes for 4 s, yet the run's heartbeat comes from a timer, so a
    second sync started meanwhile is refused instead of taking over. (A heartbeat written
    per completed request would be 3 s old at the check, past the 2 s limit.)"""
    settings.VECTIS_SYNC_HEARTBEAT_SECONDS = 0.5
    settings.VECTIS_SYNC_STALE_SECONDS = 2
    settings.KEEPIT_HTTP_CONCURRENCY = 1
    settings.KEEPIT_AUDIT_WINDOW_DAYS = 1
    settings.KEEPIT_AUDIT_SLICE_HOURS = 24
    sandbox = KeepitSandbox(
        SandboxConfig(accounts=1, connectors_per_account=2, events_per_account_per_day=2),
        latency_ms=300,
    ).start()
    try:
        settings.KEEPIT_BASE_URL_TEMPLATE = sandbox.base_url_template
        connection = sandbox_connection(sandbox)
        sandbox.inject("slow:4", route="children")
        outcome: list[str] = []

        def slow_sync() -> None:
            from django.db import connections

            try:
                outcome.append(run_sync(Connection.objects.get(pk=connection.pk)).outcome)
            finally:
                connections.close_all()

        thread = threading.Thread(target=slow_sync)
        thread.start()
        time.sleep(3)  # past VECTIS_SYNC_STALE_SECONDS, while the child list is still coming
        assert thread.is_alive(), "the slow sync should still be running"
        with pytest.raises(SyncAlreadyRunning):
            claim_sync_run(connection, trigger="manual", now=timezone.now())
        thread.join(timeout=60)
        assert outcome == [SyncRun.Outcome.SUCCEEDED]
        run = SyncRun.objects.get()
        assert run.outcome == SyncRun.Outcome.SUCCEEDED
        assert run.duration_seconds is not None
        assert run.duration_seconds > 4
    finally:
        sandbox.stop()


@pytest.mark.django_db(transaction=True)
def test_a_run_in_one_process_beats_for_its_own_running_parts_only() -> None:
    """`RunHeartbeat(own_parts=True)`: every running part this process claimed gets the
    heartbeat (one stored aside while the next is read must not look lost), but never a
    part another worker runs: its heartbeat is that worker's proof of life, and a beat
    from here would hide its crash from the watchdog."""
    from integrations.lifecycle import RunHeartbeat, this_worker
    from integrations.models import SyncChunk

    connection = Connection.objects.create(provider="keepit", name="Beats", enabled=True)
    run = claim_sync_run(connection, trigger="manual", now=timezone.now())
    long_ago = timezone.now() - timedelta(hours=1)
    mine, theirs, waiting = SyncChunk.objects.bulk_create(
        [
            SyncChunk(
                run=run,
                number=n,
                kind=SyncChunk.Kind.ACCOUNTS,
                state=state,
                worker=worker,
                heartbeat_at=long_ago,
            )
            for n, state, worker in (
                (1, SyncChunk.State.RUNNING, this_worker()),
                (2, SyncChunk.State.RUNNING, "another-host:4242"),
                (3, SyncChunk.State.PENDING, ""),
            )
        ]
    )
    with RunHeartbeat(run, own_parts=True, interval=0.05):
        # Until this process's part has had a beat (however slow the machine), then a few
        # more beats' time for a wrong one to reach the others.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            mine.refresh_from_db()
            if mine.heartbeat_at != long_ago:
                break
            time.sleep(0.05)
        time.sleep(0.3)
    beats = dict(SyncChunk.objects.values_list("number", "heartbeat_at"))
    beat = beats[mine.number]
    assert beat is not None
    assert beat > long_ago
    assert beats[theirs.number] == long_ago
    assert beats[waiting.number] == long_ago


# --- partial is not success forever ---------------------------------------------------------


@pytest.mark.django_db
def test_three_partial_runs_in_a_row_make_a_connection_degraded_and_alert(
    client: Client, admin_user: object, sandbox: KeepitSandbox, settings: Settings
) -> None:
    settings.KEEPIT_BASE_URL_TEMPLATE = sandbox.base_url_template
    settings.KEEPIT_MAX_ATTEMPTS = 1
    StaleRuleFactory.create(name="Stale", recipients="noc@msp.example")
    connection = sandbox_connection(sandbox)
    broken = sandbox.msp.accounts[2]
    sandbox.server.failing_accounts.add(broken.guid)
    client.force_login(admin_user)  # type: ignore[arg-type]
    for number in range(1, 4):
        connection.refresh_from_db()
        run = run_sync(connection, now=sandbox.clock.now_datetime())
        assert run.outcome == SyncRun.Outcome.PARTIAL
        connection.refresh_from_db()
        assert connection.partial_runs_in_row == number
        assert connection.is_degraded() is (number == 3)
        now = sandbox.clock.now_datetime()
        opened = alert_services.evaluate(now=now).opened
        degraded = [a for a in opened if a.kind == Alert.Kind.SYNC_DEGRADED]
        assert len(degraded) == (1 if number == 3 else 0)
    alert = Alert.objects.get(kind=Alert.Kind.SYNC_DEGRADED)
    assert alert.connection_id == connection.pk
    assert (broken.company_name or broken.full_name) in alert.detail
    card = client.get("/admin/integrations/").content.decode()
    assert 'data-testid="state">Degraded<' in card
    listing = client.get("/admin/keepit/keepitconnection/").content.decode()
    assert ">Degraded<" in listing
    home = client.get("/admin/").content.decode()
    assert 'data-state="Degraded"' in home
    # One full success ends it.
    sandbox.server.failing_accounts.clear()
    connection.refresh_from_db()
    assert run_sync(connection, now=sandbox.clock.now_datetime()).outcome == "succeeded"
    connection.refresh_from_db()
    assert connection.partial_runs_in_row == 0
    resolved = alert_services.evaluate(now=sandbox.clock.now_datetime()).resolved
    assert [a.kind for a in resolved] == [Alert.Kind.SYNC_DEGRADED]
