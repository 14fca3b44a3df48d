"""The monthly report of a month lived through: the sandbox MSP synced every night of
November under time-machine, one connector without a complete backup for a day and a
restore in its audit log; the PDF's figures are checked against what the sandbox says
happened."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import time_machine
from pypdf import PdfReader

from backups.models import BackupConnector
from integrations.models import SyncRun
from keepit_sandbox import KeepitSandbox, SandboxConfig
from tests.conftest import connect, sync
from vectis.reports.monthly import Month
from vectis.reports.pdf import render_pdf

pytestmark = pytest.mark.django_db
NOVEMBER = Month(date(2026, 11, 1))


@pytest.fixture
def october_sandbox() -> Iterator[KeepitSandbox]:
    """A small MSP whose clock stands at the end of October."""
    config = SandboxConfig(
        accounts=2, connectors_per_account=3, events_per_account_per_day=2, own_read_audit=False
    )
    start = datetime(2026, 10, 31, 22, 0, tzinfo=UTC)
    with KeepitSandbox(config, start=start, speed=0) as running:
        yield running


def text_of(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    return " ".join(" ".join((page.extract_text() or "").split()) for page in reader.pages)


def test_a_month_synced_night_after_night_reads_in_the_report(
    october_sandbox: KeepitSandbox, settings: Any
) -> None:
    sandbox, msp = october_sandbox, october_sandbox.msp
    settings.KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC = 2
    connection = connect(sandbox, settings)
    target = next(
        c
        for account in msp.accounts
        for c in msp.connectors[account.guid]
        if c.scenario == "healthy" and c.type != "system" and c.deletion_deadline is None
    )
    # 10 November: every job of the target is cancelled (no complete backup that day).
    msp.set_job_outcome(target.guid, "cancelled", since=datetime(2026, 11, 10, tzinfo=UTC))
    msp.set_job_outcome(target.guid, "successful", since=datetime(2026, 11, 11, tzinfo=UTC))
    restore = "Restore of the mailbox anna@contoso.example to its original place"
    msp.log(target, at=datetime(2026, 11, 15, 9, 30, tzinfo=UTC), message=restore, succeeded=True)

    # A sync every night at 02:00 (and one at the start), each at the sandbox's time.
    moment = datetime(2026, 10, 31, 22, 0, tzinfo=UTC)
    while moment < datetime(2026, 12, 1, 3, 0, tzinfo=UTC):
        with time_machine.travel(moment, tick=False):
            run = sync(connection, sandbox)
        assert run.outcome == SyncRun.Outcome.SUCCEEDED, (moment, run.error)
        following = (moment + timedelta(days=1)).replace(hour=2)
        sandbox.advance(following - moment)
        moment = following

    connector = BackupConnector.objects.get(external_id=target.guid)
    assert connector.customer is not None
    with time_machine.travel(datetime(2026, 12, 1, 8, 0, tzinfo=UTC), tick=False):
        text = text_of(render_pdf(connector.customer, NOVEMBER))

    # What the sandbox says happened to the target, day by day (jobs ended each day).
    now = sandbox.clock.now()
    missed = []
    for day in NOVEMBER.days:
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        counts = msp.job_counts(target, midnight, midnight + 86400, now)
        if counts["successful"] == 0 or counts["unsuccessful"] or counts["incomplete"]:
            missed.append(day.day)
    assert 10 in missed  # the cancelled day
    complete = len(NOVEMBER.days) - len(missed)
    row = f"Days without a complete backup: {', '.join(map(str, missed))} {complete} of 30"
    assert row in text, text
    assert f"{connector.name} ({len(missed)} day{'s' if len(missed) != 1 else ''} without" in text
    # The restore, with when (UTC) and who.
    assert f"2026-11-15 09:30 UTC {restore} scheduler@keepit.example" in text, text
