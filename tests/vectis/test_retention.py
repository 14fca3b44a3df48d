"""History is bounded: what is past its retention is pruned in batches, by setting, by
the daily beat task and the `prune_history` command (vectis/retention.py)."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.conf import settings
from django.core.management import call_command
from pytest_django.fixtures import Settings

from alerts.models import Alert, AlertEvent, AlertNotification
from backups.models import BackupAuditEvent, BackupJobDay
from integrations.models import SyncChunk, SyncRun
from tests.conftest import ROOT, subprocess_env
from tests.factories import (
    NOW,
    AuditEventFactory,
    ConnectionFactory,
    ConnectorFactory,
    JobDayFactory,
    StaleRuleFactory,
)
from vectis import retention
from vectis.models import FleetWrite
from vectis.tasks import prune_history

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


def history() -> dict[str, object]:
    """A connection with a little of every kind of history, old and recent."""
    connection = ConnectionFactory.create()
    connector = ConnectorFactory.create(connection=connection)
    events = {
        age: AuditEventFactory.create(connector=connector, occurred_at=NOW - age * DAY)
        for age in (1, 30, 399, 401, 800)
    }
    for age in (1, 399, 401):
        JobDayFactory.create(connector=connector, day=(NOW - age * DAY).date())
    runs = {
        age: SyncRun.objects.create(
            connection=connection,
            started_at=NOW - age * DAY,
            heartbeat_at=NOW - age * DAY,
            finished_at=NOW - age * DAY,
            outcome=SyncRun.Outcome.SUCCEEDED,
        )
        for age in (1, 89, 91, 200)
    }
    SyncChunk.objects.create(run=runs[200], number=0, kind=SyncChunk.Kind.PLAN)
    # A run still going is never pruned, however old it looks.
    SyncRun.objects.create(connection=connection, started_at=NOW - 300 * DAY, heartbeat_at=NOW)
    rule = StaleRuleFactory.create()

    def alert(key: str, opened_days: int, resolved_days: int | None) -> Alert:
        made = Alert.objects.create(
            key=key,
            kind=Alert.Kind.BACKUP_STALE,
            rule=rule,
            connector=connector,
            summary=key,
            opened_at=NOW - opened_days * DAY,
            last_seen_at=NOW - opened_days * DAY,
            resolved_at=None if resolved_days is None else NOW - resolved_days * DAY,
            state=Alert.State.OPEN if resolved_days is None else Alert.State.RESOLVED,
        )
        event = AlertEvent.objects.create(
            alert=made, kind=AlertEvent.Kind.OPENED, at=made.opened_at
        )
        mail = AlertNotification.objects.create(
            recipient="noc@msp.example",
            subject=key,
            body_text="…",
            created_at=made.opened_at,
            next_attempt_at=made.opened_at,
        )
        mail.events.add(event)
        return made

    alerts = {
        "old resolved": alert("old resolved", 500, 400),
        "recent resolved": alert("recent resolved", 300, 200),
        "open for ages": alert("open for ages", 600, None),
    }
    orphan = AlertNotification.objects.create(
        recipient="noc@msp.example",
        subject="orphan",
        body_text="…",
        created_at=NOW - 500 * DAY,
        next_attempt_at=NOW - 500 * DAY,
    )
    return {"events": events, "runs": runs, "alerts": alerts, "orphan": orphan}


def test_history_past_its_retention_goes_in_batches_and_the_rest_stays() -> None:
    made = history()
    seen: list[tuple[str, int]] = []
    pruned = retention.prune_history(
        now=NOW, batch_size=1, progress=lambda name, done: seen.append((name, done))
    )
    assert pruned == {
        "audit events": 2,
        "backup job days": 1,
        "sync runs": 2,
        "resolved alerts and their history": 1,
        "alert e-mail deliveries": 2,
        "dashboard change marks": 0,  # written now, not a day before NOW
    }
    # One row per batch here: every batch its own step.
    assert ("audit events", 1) in seen
    assert ("audit events", 2) in seen
    ages = sorted((NOW - e.occurred_at).days for e in BackupAuditEvent.objects.all())
    assert ages == [1, 30, 399]
    assert sorted((NOW.date() - d.day).days for d in BackupJobDay.objects.all()) == [1, 399]
    assert sorted((NOW - r.started_at).days for r in SyncRun.objects.all()) == [1, 89, 300]
    assert not SyncChunk.objects.exists()  # went with its run
    alerts = made["alerts"]
    assert isinstance(alerts, dict)
    assert set(Alert.objects.values_list("key", flat=True)) == {"recent resolved", "open for ages"}
    # The old alert's history and its e-mail went with it; the open one keeps all of its.
    assert AlertEvent.objects.count() == 2
    assert set(AlertNotification.objects.values_list("subject", flat=True)) == {
        "recent resolved",
        "open for ages",
    }
    # A second pass finds nothing more.
    assert set(retention.prune_history(now=NOW).values()) == {0}


def test_retention_follows_the_settings(settings: Settings) -> None:
    history()
    settings.VECTIS_AUDIT_RETENTION_DAYS = 20
    settings.VECTIS_SYNC_RUN_RETENTION_DAYS = 30
    pruned = retention.prune_history(now=NOW)
    assert pruned["audit events"] == 4
    assert pruned["sync runs"] == 3
    assert list(BackupAuditEvent.objects.values_list("occurred_at", flat=True)) == [NOW - DAY]


@time_machine.travel(NOW, tick=False)
def test_the_command_prunes_with_progress_and_a_dry_run_only_counts() -> None:
    history()
    out = StringIO()
    call_command("prune_history", "--dry-run", stdout=out)
    assert "audit events: 2 older than 400 days" in out.getvalue()
    assert BackupAuditEvent.objects.count() == 5
    out = StringIO()
    call_command("prune_history", "--batch-size", "1", stdout=out)
    text = out.getvalue()
    assert "audit events: 1 deleted so far" in text
    assert "audit events: 2 deleted" in text
    assert BackupAuditEvent.objects.count() == 3


def test_beat_prunes_daily() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["prune-history"]
    assert entry["task"] == "vectis.tasks.prune_history"
    assert entry["schedule"] == timedelta(hours=24)
    made = history()
    assert made
    result = prune_history.apply().get()
    # At the real now (later than the test data's NOW), the old rows are due.
    assert result["audit events"] >= 2


def test_startup_refuses_a_retention_a_first_sync_would_undo() -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(VECTIS_AUDIT_RETENTION_DAYS="10"),
    )
    assert result.returncode != 0
    assert (
        "VECTIS_AUDIT_RETENTION_DAYS (10) must be more than the audit window a first sync "
        "reads (KEEPIT_AUDIT_WINDOW_DAYS = 14)"
    ) in result.stderr


def test_the_dashboards_change_marks_go_once_no_snapshot_in_use_can_need_them() -> None:
    """Kept tiles (vectis.fleet_tiles) are used for an hour at most, from snapshots
    taken after the newest mark a day old: those start at or after its horizon (the
    oldest transaction running when it was written) and never read a mark below it. A
    transaction that wrote 30 hours ago and is still running must keep its mark, however
    old: it may commit after tiles are kept."""
    FleetWrite.objects.all().delete()
    hour = timedelta(hours=1)
    FleetWrite.objects.bulk_create(
        [
            FleetWrite(xid=1, written_at=NOW - 3 * DAY, horizon=1),  # over long ago
            FleetWrite(xid=2, written_at=NOW - 30 * hour, horizon=1),  # still running
            FleetWrite(xid=5, written_at=NOW - DAY - hour, horizon=2),  # 2 running then
            FleetWrite(xid=9, written_at=NOW - hour, horizon=9),
        ]
    )
    assert retention.prune_history(now=NOW)["dashboard change marks"] == 1
    assert sorted(FleetWrite.objects.values_list("xid", flat=True)) == [2, 5, 9]
