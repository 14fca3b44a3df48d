"""Benchmark of the daily pages (`make bench-pages`): server time and SQL queries with
8,000 connectors and 500,000 audit events in PostgreSQL.

It fills a scratch database (`vectis_bench_pages`) with 2,000 customers x 4 connectors of
mixed status, 250 audit events per customer over 14 days and some open alerts, then
renders each page through Django's test client (in process: the time is server time)
several times and reports the median and worst run. The target is under 300 ms.
The last line printed is one JSON object.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATABASE = "vectis_bench_pages"
CUSTOMERS = 2000
CONNECTORS_PER_CUSTOMER = 4
EVENTS = 500_000
RUNS = 7
TARGET_MS = 300
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def recreate_database() -> None:
    import psycopg2  # type: ignore[import-untyped]

    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{DATABASE}"')
    admin.close()
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
            "DJANGO_SETTINGS_MODULE": "vectis.settings_test",
        },
        check=True,
    )


def seed() -> dict[str, int]:
    import random

    from alerts.models import Alert, AlertRule
    from backups.models import (
        AccountLink,
        AccountSeat,
        BackupAuditEvent,
        BackupConnector,
        BackupConnectorStatus,
        BackupJobDay,
    )
    from customers.models import Customer
    from integrations.models import Connection
    from integrations.sql import insert_rows

    rng = random.Random(7)
    connection = Connection.objects.create(provider="keepit", name="Bench", enabled=True)
    customers = Customer.objects.bulk_create(
        [
            Customer(name=f"Customer {i:04d} Ltd", normalized_name=f"customer {i:04d}")
            for i in range(CUSTOMERS)
        ],
        batch_size=2000,
    )
    links = AccountLink.objects.bulk_create(
        [
            AccountLink(
                connection=connection,
                external_id=f"acct-{c.pk}",
                company_name=c.name,
                customer=c,
                method="exact",
                state="linked",
                first_seen_at=NOW,
                last_seen_at=NOW,
            )
            for c in customers
        ],
        batch_size=2000,
    )
    # A few accounts to review.
    AccountLink.objects.filter(pk__in=[link.pk for link in links[:40]]).update(
        state="ambiguous", customer=None
    )
    kinds = ["m365", "entra_id", "google_workspace", "salesforce", "okta", "jira"]
    connectors = BackupConnector.objects.bulk_create(
        [
            BackupConnector(
                connection=connection,
                account_link=link,
                customer_id=link.customer_id,
                external_id=f"{link.external_id}-{j}",
                name=f"{link.company_name} #{j}",
                kind=kinds[(i + j) % len(kinds)],
                vendor_type="o365-admin",
                first_seen_at=NOW - timedelta(days=90),
                last_seen_at=NOW,
            )
            for i, link in enumerate(links)
            for j in range(CONNECTORS_PER_CUSTOMER)
        ],
        batch_size=2000,
    )
    statuses = ["ok"] * 80 + ["warning"] * 8 + ["failed"] * 6 + ["onboarding"] * 4 + ["unknown"] * 2
    status_rows = []
    for connector in connectors:
        status = rng.choice(statuses)
        last = None if status == "onboarding" else NOW - timedelta(hours=rng.uniform(1, 200))
        status_rows.append(
            {
                "connector_id": connector.pk,
                "status": status,
                "health": "healthy",
                "reason": "OK",
                "reason_text": "Backing up normally",
                "last_backup_at": last,
                "last_success_at": last,
                "checked_at": NOW,
                "status_changed_at": NOW,
            }
        )
    insert_rows(BackupConnectorStatus, status_rows, conflict=None, returning="connector")
    categories = [
        "user",
        "account",
        "connector",
        "connection",
        "recovery",
        "reporting",
        "security",
        "compliance",
        "other",
    ]
    per_customer = EVENTS // CUSTOMERS
    by_customer: dict[int, list[int]] = {}
    for connector in connectors:
        by_customer.setdefault(connector.customer_id or 0, []).append(connector.pk)
    event_rows = []
    for customer in customers:
        for k in range(per_customer):
            moment = NOW - timedelta(seconds=rng.randrange(14 * 86400))
            event_rows.append(
                {
                    "connection_id": connection.pk,
                    "customer_id": customer.pk,
                    "connector_id": rng.choice(by_customer.get(customer.pk, [None])),
                    "account_external_id": f"acct-{customer.pk}",
                    "occurred_at": moment,
                    "category": rng.choice(categories),
                    "area": "User events",
                    "message": "Something happened",
                    "actor": "someone@example.com",
                    "succeeded": rng.random() > 0.05,
                    "allowed": True,
                    "method": "get",
                    "is_own_read": k % 10 == 0,
                    "dedup_key": f"{customer.pk}-{k}",
                    "created_at": NOW,
                }
            )
    insert_rows(BackupAuditEvent, event_rows, conflict=None)
    # 28 days of backup-job outcomes per connector (224,000 rows at full size), a few
    # failures and seat violations among them.
    job_rows = []
    for connector in connectors:
        for back in range(28):
            failed = rng.random() < 0.04
            job_rows.append(
                {
                    "connector_id": connector.pk,
                    "day": (NOW - timedelta(days=back)).date(),
                    "successful": rng.randrange(1, 4),
                    "incomplete": 1 if rng.random() < 0.05 else 0,
                    "unsuccessful": 1 if failed else 0,
                    "closed": back > 0,
                    "last_failure_at": NOW - timedelta(days=back) if failed else None,
                    "last_failure_outcome": "unsuccessful" if failed else "",
                    "last_error": "Authentication to the SaaS application is no longer valid"
                    if failed
                    else "",
                    "checked_at": NOW,
                }
            )
    insert_rows(BackupJobDay, job_rows, conflict=None)
    insert_rows(
        AccountSeat,
        [
            {
                "account_link_id": link.pk,
                "resource": "o365-admin-seats-total",
                "label": "Microsoft 365 seats",
                "usage": 90 + i % 30,
                "limit": 100,
                "violated": 90 + i % 30 > 100,
                "checked_at": NOW,
            }
            for i, link in enumerate(links)
        ],
        conflict=None,
    )
    rule = AlertRule.objects.create(name="Stale", kind="backup_stale", recipients="t@x.example")
    Alert.objects.bulk_create(
        [
            Alert(
                key=f"{rule.pk}:{c.pk}",
                kind="backup_stale",
                rule=rule,
                connector=c,
                summary=f"{c.name} stale",
                opened_at=NOW,
                last_seen_at=NOW,
            )
            for c in connectors[::37]
        ]
    )
    from django.db import connection as db

    with db.cursor() as cursor:
        cursor.execute("ANALYZE")
    return {"customers": len(customers), "connectors": len(connectors), "events": len(event_rows)}


def measure() -> dict[str, Any]:
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from customers.models import Customer

    user = User.objects.create_superuser("bench", "bench@example.com", "bench")
    client = Client()
    client.force_login(user)
    customer = Customer.objects.order_by("id")[CUSTOMERS // 2]
    pages = {
        "admin_home": "/admin/",
        "dashboard": "/admin/backups/",
        "dashboard_filtered": "/admin/backups/?status=failed&kind=m365&q=Customer%2010",
        "dashboard_seats_exceeded": "/admin/backups/?status=all&seats=exceeded",
        "customers_list": "/admin/customers/customer/",
        "customer_page": f"/admin/customers/customer/{customer.pk}/change/",
        "customer_page_filtered": (
            f"/admin/customers/customer/{customer.pk}/change/?category=recovery&page=2"
        ),
        "account_review": "/admin/backups/accountlink/",
    }
    results: dict[str, Any] = {}
    for name, url in pages.items():
        client.get(url)  # warm caches (templates, content types), as a running server has
        times = []
        queries = 0
        for _ in range(RUNS):
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (url, response.status_code)
            queries = len(captured.captured_queries)
        results[name] = {
            "median_ms": round(statistics.median(times), 1),
            "max_ms": round(max(times), 1),
            "queries": queries,
        }
        print(
            f"  {name}: median {results[name]['median_ms']} ms, worst "
            f"{results[name]['max_ms']} ms, {queries} queries",
            file=sys.stderr,
        )
    return results


def main() -> int:
    recreate_database()
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vectis.settings_test")
    import django

    django.setup()
    from django.conf import settings

    settings.ALLOWED_HOSTS = ["testserver"]
    started = time.perf_counter()
    sizes = seed()
    print(f"Seeded {sizes} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    pages = measure()
    print(
        json.dumps(
            {
                **sizes,
                "pages": pages,
                "target_ms": TARGET_MS,
                "all_under_target": all(p["median_ms"] < TARGET_MS for p in pages.values()),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
