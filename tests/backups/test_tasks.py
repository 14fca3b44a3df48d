"""The scheduled path, end to end: beat's task → Redis → a real worker → the tables."""

from __future__ import annotations

import subprocess
import time

import pytest

from backups.models import BackupAuditEvent, BackupConnector, BackupConnectorStatus
from backups.tasks import sync_connection, sync_due_connections
from integrations.models import SyncRun
from keepit_sandbox import KeepitSandbox
from tests.conftest import sandbox_connection


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_beat_task_syncs_due_connections_through_a_real_worker(
    celery_worker_process: subprocess.Popen[bytes], worker_sandbox: KeepitSandbox
) -> None:
    connection = sandbox_connection(worker_sandbox)
    result = sync_due_connections.delay()
    assert result.get(timeout=30)["enqueued"] == [connection.pk]
    deadline = time.monotonic() + 60
    run = None
    while time.monotonic() < deadline:
        run = SyncRun.objects.filter(connection=connection).exclude(outcome="running").first()
        if run is not None:
            break
        time.sleep(0.3)
    assert run is not None, "the worker did not finish the sync within 60 s"
    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    assert run.trigger == SyncRun.Trigger.SCHEDULE
    assert BackupConnector.objects.filter(connection=connection).count() > 0
    assert BackupConnectorStatus.objects.filter(connector__connection=connection).count() > 0
    assert BackupAuditEvent.objects.filter(connection=connection).count() > 0
    connection.refresh_from_db()
    assert connection.next_sync_at is not None
    # Not due any more: the next beat tick enqueues nothing.
    assert sync_due_connections.delay().get(timeout=30)["enqueued"] == []
    # The run went through its parts: the account list, one part of accounts, the audit.
    kinds = list(run.chunks.order_by("number").values_list("kind", "state"))
    assert kinds == [("plan", "done"), ("accounts", "done"), ("audit", "done")]


@pytest.mark.django_db
def test_disabled_or_missing_connections_are_skipped(worker_sandbox: KeepitSandbox) -> None:
    disabled = sandbox_connection(worker_sandbox, enabled=False)
    assert sync_connection.apply(args=(disabled.pk, "schedule")).get()["skipped"] == (
        "the connection is disabled"
    )
    assert sync_connection.apply(args=(999999, "schedule")).get()["skipped"] == (
        "the connection no longer exists"
    )
