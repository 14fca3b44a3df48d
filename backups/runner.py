"""One sync of one connection, for every provider, in a fixed order:

1. **Claim** the connection (integrations.lifecycle: a `running` SyncRun; the database
   refuses a second) and keep its heartbeat on a timer while the run is alive.
2. **Collect**: the provider reads its vendor and returns snapshots (backups/snapshot.py);
   it writes no table.
3. **Ingest the inventory** in one transaction (backups/ingest.py): account links and
   customers, connectors, statuses, then stored events learn what was not known when
   they arrived.
4. **Ingest the audit stream** batch by batch; each batch is stored together with the
   provider's sync state (its cursor, or where to resume) in one transaction, so a run
   stopped half-way resumes where it stopped.
5. **Finish**: outcome, counts, requests, error sentence; listeners (alerts) are told
   after commit.

Outcomes: the vendor unreadable as a whole → `failed` and nothing written; some accounts
or the audit log unreadable → `partial`, naming them, their data untouched; Celery's soft
time limit → `partial` with a sentence saying it will continue; anything unexpected →
`failed` with a sentence (the traceback goes to the log).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from integrations.lifecycle import RunHeartbeat, claim_sync_run, finish_sync_run
from integrations.models import Connection, SyncRun
from integrations.registry import get_provider

from .ingest import Ingest
from .snapshot import AuditError, CollectError, Collection, SyncProgress, SyncProvider

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


def run_sync(
    connection: Connection,
    *,
    trigger: str = SyncRun.Trigger.SCHEDULE,
    now: datetime | None = None,
    progress: Progress | None = None,
    provider: SyncProvider | None = None,
) -> SyncRun:
    """Sync one connection and return its finished run. Raises
    `integrations.lifecycle.SyncAlreadyRunning` when another sync holds the claim."""
    started = now or timezone.now()
    source = provider or _sync_provider(connection)
    run = claim_sync_run(connection, trigger=trigger, now=started)
    tracker = SyncProgress(progress)
    ingest = Ingest(connection, now=started)
    collection: Collection | None = None
    outcome: str = SyncRun.Outcome.SUCCEEDED
    error, stopped_early = "", False
    try:
        with RunHeartbeat(run):
            collection = source.collect(connection, now=started, progress=tracker)
            collection.read_inventory()
            outcome, error = _ingest(connection, collection, ingest, tracker)
    except CollectError as exc:
        outcome, error = SyncRun.Outcome.FAILED, exc.sentence
    except SoftTimeLimitExceeded:
        stopped_early = True
        outcome = SyncRun.Outcome.PARTIAL
        limit = settings.CELERY_TASK_SOFT_TIME_LIMIT
        if ingest.inventory_stored:
            error = (
                f"The sync reached its time limit ({limit} s) while reading {tracker.phase}. "
                "Everything read so far is kept, and the next sync continues from there."
            )
        else:
            error = (
                f"The sync reached its time limit ({limit} s) while reading {tracker.phase}, "
                "before it could store them: nothing of this run was kept and the data shown "
                "is from the last sync. The next sync reads them again; if this repeats, "
                "raise CELERY_TASK_SOFT_TIME_LIMIT."
            )
        logger.warning("Sync of connection %s: %s", connection.pk, error)
    except Exception as exc:
        logger.exception("Sync of connection %s failed unexpectedly", connection.pk)
        outcome = SyncRun.Outcome.FAILED
        error = (
            f"The sync stopped on an unexpected error ({type(exc).__name__}) while reading "
            f"{tracker.phase}. What it read before is kept and the next sync continues from "
            "there; if this happens again, send the worker log of this time to support."
        )
    finally:
        if collection is not None:
            collection.close()
    counts = ingest.counts.as_dict()
    if collection is not None:
        counts.update(collection.counts)
    return finish_sync_run(
        run,
        outcome=outcome,
        now=timezone.now(),
        counts=counts,
        http_requests=collection.requests() if collection is not None else 0,
        error=error,
        failed_accounts=sorted(collection.failed_accounts) if collection is not None else [],
        stopped_early=stopped_early,
        stored_data=ingest.inventory_stored,
        notes=" ".join(collection.notes()) if collection is not None else "",
    )


def _sync_provider(connection: Connection) -> SyncProvider:
    provider = get_provider(connection.provider)
    if not callable(getattr(provider, "collect", None)):
        raise TypeError(f"The {provider.name} provider does not sync backups.")
    return provider  # type: ignore[return-value]


def _record_credential(connection: Connection, collection: Collection, *, now: datetime) -> None:
    """What the vendor said about the connection's own credential (kept as it was when
    it could not say)."""
    credential = collection.credential()
    if credential is None:
        return
    values: dict[str, Any] = {
        "credential_kind": credential.kind,
        "credential_checked_at": now,
        "credential_note": credential.note[:255],
    }
    if credential.found:  # the vendor did not list it: what was known stays
        values["credential_expires_at"] = credential.expires_at
        values["credential_last_used_at"] = credential.last_used_at
    Connection.objects.filter(pk=connection.pk).update(**values)
    for key, value in values.items():
        setattr(connection, key, value)


def _ingest(
    connection: Connection, collection: Collection, ingest: Ingest, tracker: SyncProgress
) -> tuple[str, str]:
    """Steps 3 and 4; returns (outcome, error sentence)."""
    tracker.phase = "the connectors and backup statuses"
    with transaction.atomic():
        ingest.apply_inventory(collection.accounts)
        _record_credential(connection, collection, now=ingest.now)
    ingest.inventory_stored = True
    audit_error = ""
    try:
        for batch in collection.audit():
            if batch.phase:
                tracker.phase = batch.phase
            with transaction.atomic():
                ingest.insert_events(batch.events, seen=batch.seen or len(batch.events))
                connection.sync_state = batch.sync_state
                Connection.objects.filter(pk=connection.pk).update(sync_state=batch.sync_state)
            tracker("audit events", ingest.counts.events_seen, 0)
    except AuditError as exc:
        audit_error = exc.sentence
    problems = []
    failed = collection.failed_accounts
    if failed:
        problems.append(
            f"{len(failed)} account(s) could not be read: " + "; ".join(sorted(failed.values())[:5])
        )
    problems += collection.problems
    if audit_error:
        problems.append(f"The audit log could not be read completely: {audit_error}")
    if problems:
        return SyncRun.Outcome.PARTIAL, " ".join(problems)
    return SyncRun.Outcome.SUCCEEDED, ""
