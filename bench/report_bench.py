"""Benchmark of the monthly backup report (`make bench-report`): the time to build one
customer's PDF with 50 connectors (a month of daily job summaries each, 300 restores and
downloads, 40 alerts) in PostgreSQL — target under 2 s. It fills a scratch database
(`vectis_bench_report`), renders the report several times in this process (figures and
PDF), and prints the median and worst run; the last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.sync_bench import recreate_database  # noqa: E402

DATABASE = "vectis_bench_report"
RUNS = 7
TARGET_S = 2.0


def fill(connectors: int) -> int:
    """One customer with `connectors` connectors and November 2026 of data; its id."""
    from alerts.models import Alert, AlertRule
    from backups.models import (
        AuditCategory,
        BackupAuditEvent,
        BackupConnector,
        BackupConnectorStatus,
        BackupJobDay,
        ConnectorKind,
    )
    from customers.models import Customer
    from integrations.models import Connection

    start = datetime(2026, 11, 1, tzinfo=UTC)
    connection = Connection.objects.create(provider="keepit", name="Keepit US", config={})
    customer = Customer.objects.create(name="Contoso Ltd")
    kinds = [kind for kind, _ in ConnectorKind.choices]
    made = BackupConnector.objects.bulk_create(
        BackupConnector(
            connection=connection,
            customer=customer,
            external_id=f"c{n}",
            name=f"Contoso service {n:02}",
            kind=kinds[n % len(kinds)],
            first_seen_at=start - timedelta(days=60),
            last_seen_at=start + timedelta(days=30),
        )
        for n in range(connectors)
    )
    BackupConnectorStatus.objects.bulk_create(
        BackupConnectorStatus(
            connector=connector,
            status="ok",
            last_success_at=start + timedelta(days=29, hours=23),
            checked_at=start + timedelta(days=30),
        )
        for connector in made
    )
    BackupJobDay.objects.bulk_create(
        BackupJobDay(
            connector=connector,
            day=date(2026, 11, 1) + timedelta(days=d),
            successful=0 if (n + d) % 17 == 0 else 2,
            unsuccessful=1 if (n + d) % 23 == 0 else 0,
            closed=True,
            checked_at=start + timedelta(days=d + 1),
        )
        for n, connector in enumerate(made)
        for d in range(30)
    )
    BackupAuditEvent.objects.bulk_create(
        BackupAuditEvent(
            connection=connection,
            customer=customer,
            connector=made[n % connectors],
            occurred_at=start + timedelta(hours=2 * n),
            category=AuditCategory.RECOVERY,
            area="Restore",
            message=f"Restored item {n} to its original place",
            actor="tech@msp.example",
            succeeded=True,
            dedup_key=f"bench-{n}",
        )
        for n in range(300)
    )
    rule = AlertRule.objects.create(name="Stale backups", kind="backup_stale", recipients="")
    Alert.objects.bulk_create(
        Alert(
            rule=rule,
            connector=made[n % connectors],
            kind="backup_stale",
            key=f"stale:{n}",
            summary=f"Contoso service {n:02} — no complete backup",
            opened_at=start + timedelta(hours=17 * n),
            last_seen_at=start + timedelta(hours=17 * n + 1),
            resolved_at=start + timedelta(hours=17 * n + 5) if n % 4 else None,
        )
        for n in range(40)
    )
    return customer.pk


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connectors", type=int, default=50)
    args = parser.parse_args()
    recreate_database(DATABASE)
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vectis.settings_test")
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from customers.models import Customer
    from vectis.reports.monthly import Month
    from vectis.reports.pdf import render_pdf

    customer = Customer.objects.get(pk=fill(args.connectors))
    month = Month.parse("2026-11")
    render_pdf(customer, month)  # (warm: templates, fonts)
    seconds, size, queries = [], 0, 0
    for _ in range(RUNS):
        with CaptureQueriesContext(connection) as captured:
            began = time.perf_counter()
            pdf = render_pdf(customer, month)
            seconds.append(time.perf_counter() - began)
        size, queries = len(pdf), len(captured)
    result = {
        "connectors": args.connectors,
        "runs": RUNS,
        "median_s": round(statistics.median(seconds), 3),
        "worst_s": round(max(seconds), 3),
        "target_s": TARGET_S,
        "met": max(seconds) < TARGET_S,
        "sql_queries": queries,
        "pdf_bytes": size,
    }
    print(
        f"monthly report, {args.connectors} connectors: median {result['median_s']} s, "
        f"worst {result['worst_s']} s (target {TARGET_S} s), {queries} SQL queries, "
        f"{size:,} bytes"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
