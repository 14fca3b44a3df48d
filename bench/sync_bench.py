"""Benchmark of the Keepit sync against a large sandbox MSP on PostgreSQL (`make bench`).

It starts the sandbox as its own process (default: 2,000 accounts, 4 connectors each,
25 audit records per account per day, 14 days, 20 ms latency per request) with a frozen
clock, then runs each measurement in a fresh child process so peak RSS is its own:

- floor:        fetch the same pages at the same concurrency, write nothing;
- initial:      the first sync into an empty database;
- incremental:  a sync after the sandbox has moved 15 minutes on;
- no-change:    a sync against unchanged data (must write zero rows), with the 28-day
                job-history backfill over (`KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC=0`: a
                backfilling sync reads, and writes, one more past day per account);
- naive:        a deliberately naive baseline (sequential HTTP, one update_or_create per
                row) — by default measured on a slice of the MSP (--naive-accounts) and
                extrapolated linearly to the full size, which the output says.

Own-read audit records are off in the sandbox so "no-change" really means no change.
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

START = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DATA_TABLES = (
    "customers",
    "integration_account_links",
    "backup_connectors",
    "backup_connector_status",
    "backup_audit_events",
    "backup_job_days",
    "backup_account_seats",
)
WRITE_RE = re.compile(r"^\s*(INSERT INTO|UPDATE|DELETE FROM)\s+\"?(\w+)\"?", re.IGNORECASE)


# --- child processes -------------------------------------------------------------------------


def setup_django(database: str) -> None:
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vectis.settings_test")
    import django

    django.setup()


class QueryCounter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queries = 0
        self.write_statements = 0  # INSERT/UPDATE/DELETE against the synced data tables

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        match = WRITE_RE.match(sql)
        with self.lock:
            self.queries += 1
            if match and match.group(2) in DATA_TABLES:
                self.write_statements += 1
        return execute(sql, params, many, context)


def rows_written_since(xid: int) -> int:
    """Rows of the synced tables inserted or updated by transactions after `xid` (a row's
    xmin is the transaction that wrote its current version). The sync never deletes."""
    from django.db import connection as db

    total = 0
    with db.cursor() as cursor:
        for table in DATA_TABLES:
            cursor.execute(
                f"SELECT count(*) FROM {table} WHERE xmin::text::bigint > %s",  # noqa: S608
                [xid],
            )
            total += int(cursor.fetchone()[0])
    return total


def peak_rss_mb() -> float:
    """The largest resident set of this process or of a process it started and waited
    for (a one-process sync reads the audit log in a process of its own)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def bench_connection(template: str, parent: str) -> Any:
    from django.conf import settings

    from integrations.models import Connection

    settings.KEEPIT_BASE_URL_TEMPLATE = template
    connection = Connection.objects.filter(provider="keepit", name="bench").first()
    if connection is None:
        connection = Connection(provider="keepit", name="bench", enabled=True)
    connection.config = {
        "region": "us-dc",
        "account_guid": parent,
        "username": "",
        "token_login": "vectis-api-token",
    }
    connection.set_secrets({"token_password": "sandbox-token-password"})
    connection.save()
    return connection


def child_sync(args: argparse.Namespace) -> dict[str, Any]:
    setup_django(args.database)
    from django.db import connection as db

    from backups.runner import run_sync

    connection = bench_connection(args.template, args.parent)
    counter = QueryCounter()
    with db.cursor() as cursor:
        cursor.execute("SELECT txid_current()")
        before_xid = int(cursor.fetchone()[0]) % 2**32
    # This thread's queries, and those of the threads that store the account parts (each
    # part is stored by a thread of its own while the next is read); not the heartbeat's.
    from django.db.backends.signals import connection_created

    def count_too(sender: Any, connection: Any, **kwargs: Any) -> None:
        if threading.current_thread().name.startswith("sync-store-part-"):
            connection.execute_wrappers.append(counter)

    connection_created.connect(count_too)
    started = time.perf_counter()
    try:
        with db.execute_wrapper(counter):
            run = run_sync(connection, now=datetime.fromisoformat(args.now))
    finally:
        connection_created.disconnect(count_too)
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 2),
        "outcome": run.outcome,
        "error": run.error,
        "http_requests": run.http_requests,
        "sql_queries": counter.queries,
        "write_statements": counter.write_statements,
        "row_writes": rows_written_since(before_xid),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "counts": run.counts,
    }


def child_floor(args: argparse.Namespace) -> dict[str, Any]:
    """The very reads of a sync — the provider's collect(), as `run_sync` makes them: the
    account list, the accounts in parts here, and the audit log at the same time in a
    process of its own with a quarter of the request budget (the rest here; whichever
    finishes first leaves the other all of it) — writing nothing (the few reads of what
    is already stored are counted as queries)."""
    setup_django(args.database)
    from django.conf import settings
    from django.db import connection as db

    from backups.runner import account_part_sizes, budget_line
    from backups.snapshot import SyncProgress
    from keepit.provider import KeepitProvider

    connection = bench_connection(args.template, args.parent)
    counter = QueryCounter()
    now = datetime.fromisoformat(args.now)
    total = settings.KEEPIT_HTTP_CONCURRENCY
    share = max(1, total // 4)
    started = time.perf_counter()
    with db.execute_wrapper(counter):
        collection = KeepitProvider().collect(connection, now=now, progress=SyncProgress())
        try:
            assert collection.plan is not None
            assert collection.read_accounts is not None
            assert collection.budget is not None
            plans = collection.plan()
            audit = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "floor-audit",
                    "--database",
                    args.database,
                    "--template",
                    args.template,
                    "--parent",
                    args.parent,
                    "--now",
                    args.now,
                    "--budget",
                    str(share),
                ],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            collection.budget(total - share)
            budget = collection.budget
            watcher = threading.Thread(target=lambda: (audit.wait(), budget(total)), daemon=True)
            watcher.start()
            start = 0
            for size in account_part_sizes(len(plans), settings.VECTIS_SYNC_CHUNK_ACCOUNTS):
                payloads = [p.payload for p in plans[start : start + size]]
                start += size
                collection.read_accounts(payloads, SyncProgress())
            assert audit.stdin is not None
            with contextlib.suppress(OSError):  # the accounts are read: the audit log's turn
                audit.stdin.write(budget_line(total))
                audit.stdin.flush()
            out, _err = audit.communicate()
            watcher.join()
            audit_figures = json.loads(out.strip().splitlines()[-1])
        finally:
            collection.close()
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "http_requests": collection.requests() + audit_figures["http_requests"],
        "audit_records": audit_figures["audit_records"],
        "sql_queries": counter.queries,
        "write_statements": counter.write_statements,
        "row_writes": 0,
        "peak_rss_mb": round(max(peak_rss_mb(), audit_figures["peak_rss_mb"]), 1),
    }


def child_floor_audit(args: argparse.Namespace) -> dict[str, Any]:
    """The floor's audit process: the audit log read with a share of the budget."""
    setup_django(args.database)
    from backups.runner import listen_for_budget
    from backups.snapshot import SyncProgress
    from keepit.provider import KeepitProvider

    connection = bench_connection(args.template, args.parent)
    collection = KeepitProvider().collect(
        connection, now=datetime.fromisoformat(args.now), progress=SyncProgress()
    )
    records = 0
    try:
        assert collection.budget is not None
        collection.budget(args.budget)
        listen_for_budget(collection.budget)  # as `manage.py sync_part --stdin` does
        for batch in collection.audit():
            records += batch.seen
    finally:
        collection.close()
    return {
        "http_requests": collection.requests(),
        "audit_records": records,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def child_naive(args: argparse.Namespace) -> dict[str, Any]:
    """Sequential HTTP and one update_or_create per row: what not to do."""
    setup_django(args.database)
    from django.conf import settings
    from django.db import connection as db

    from backups.models import AccountLink, BackupAuditEvent, BackupConnector, BackupConnectorStatus
    from customers.models import Customer
    from customers.names import normalize_company_name
    from keepit.client import KeepitCredentials
    from keepit.connection import client_for
    from keepit.mapping import audit_category, backup_status, connector_kind

    connection = bench_connection(args.template, args.parent)
    settings.KEEPIT_HTTP_CONCURRENCY = 1
    client = client_for(
        region="us-dc",
        credentials=KeepitCredentials("vectis-api-token", "sandbox-token-password", "api_token"),
    )
    now = datetime.fromisoformat(args.now)
    counter = QueryCounter()
    with db.cursor() as cursor:
        cursor.execute("SELECT txid_current()")
        before_xid = int(cursor.fetchone()[0]) % 2**32
    started = time.perf_counter()
    with db.execute_wrapper(counter):
        for child in client.child_accounts(args.parent):
            customer, _ = Customer.objects.get_or_create(
                normalized_name=normalize_company_name(child.display_name),
                defaults={"name": child.display_name},
            )
            link, _ = AccountLink.objects.update_or_create(
                connection=connection,
                external_id=child.id,
                defaults={
                    "company_name": child.company_name,
                    "customer": customer,
                    "state": "linked",
                    "first_seen_at": now,
                    "last_seen_at": now,
                },
            )
            summary = {s.guid: s for s in client.backup_summary(child.id)}
            for item in client.connectors(child.id):
                health = client.connector_health(child.id, item.guid)
                connector, _ = BackupConnector.objects.update_or_create(
                    connection=connection,
                    external_id=item.guid,
                    defaults={
                        "customer": customer,
                        "account_link": link,
                        "name": item.name,
                        "kind": connector_kind(item),
                        "vendor_type": item.vendor_type,
                        "first_seen_at": now,
                        "last_seen_at": now,
                    },
                )
                entry = summary.get(item.guid)
                BackupConnectorStatus.objects.update_or_create(
                    connector=connector,
                    defaults={
                        "status": backup_status(entry, health),
                        "health": health.health,
                        "reason": health.reason,
                        "checked_at": now,
                        "last_backup_at": entry.last_snapshot_time if entry else None,
                        "last_success_at": entry.last_complete_snapshot_time if entry else None,
                    },
                )
        for record in client.audit_records(args.parent, start=now - timedelta(days=14), end=now):
            BackupAuditEvent.objects.update_or_create(
                connection=connection,
                dedup_key=record.dedup_key,
                defaults={
                    "occurred_at": record.time,
                    "area": record.area,
                    "category": audit_category(record.area),
                    "message": record.message,
                    "actor": record.token,
                    "succeeded": record.succeeded,
                    "account_external_id": record.account,
                },
            )
    seconds = round(time.perf_counter() - started, 2)
    return {
        "seconds": seconds,
        "http_requests": client.request_count,
        "sql_queries": counter.queries,
        "write_statements": counter.write_statements,
        "row_writes": rows_written_since(before_xid),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


# --- the orchestrating parent ------------------------------------------------------------------


def recreate_database(name: str) -> None:
    import psycopg2  # type: ignore[import-untyped]

    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}",
        "DJANGO_SETTINGS_MODULE": "vectis.settings_test",
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True
    )


class Sandbox:
    def __init__(self, args: argparse.Namespace, *, accounts: int, start: datetime) -> None:
        command = [
            sys.executable,
            "manage.py",
            "keepit_sandbox",
            "--port",
            str(args.port),
            "--accounts",
            str(accounts),
            "--connectors-per-account",
            str(args.connectors),
            "--events-per-account-per-day",
            str(args.events),
            "--latency-ms",
            str(args.latency_ms),
            "--speed",
            "0",
            "--start",
            start.isoformat(),
            "--no-own-read-audit",
            "--processes",
            str(args.sandbox_processes),
        ]
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "vectis.settings_test"}
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.process.stdout.readline()
        guid_line = self.process.stdout.readline()
        match = re.search(r"GUID: (\S+)", guid_line)
        if not match:
            raise RuntimeError(f"the sandbox did not start: {guid_line!r}")
        self.parent = match.group(1)
        self.template = f"http://127.0.0.1:{args.port}/{{region}}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def run_child(
    args: argparse.Namespace,
    phase: str,
    *,
    database: str,
    sandbox: Sandbox,
    now: datetime,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--child",
        phase,
        "--database",
        database,
        "--template",
        sandbox.template,
        "--parent",
        sandbox.parent,
        "--now",
        now.isoformat(),
    ]
    print(f"  {phase} …", file=sys.stderr, flush=True)
    result = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if result.returncode != 0:
        raise RuntimeError(f"{phase} failed:\n{result.stderr[-4000:]}")
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    print(
        f"  {phase}: {figures['seconds']} s, {figures['http_requests']} requests, "
        f"{figures['sql_queries']} queries, {figures['row_writes']} rows written, "
        f"peak RSS {figures['peak_rss_mb']} MB",
        file=sys.stderr,
        flush=True,
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--connectors", type=int, default=4)
    parser.add_argument("--events", type=int, default=25, help="audit records per account per day")
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument(
        "--naive-accounts",
        type=int,
        default=200,
        help="accounts for the naive baseline; its figures are scaled to "
        "--accounts (0: run it at full size)",
    )
    parser.add_argument("--port", type=int, default=9310)
    parser.add_argument(
        "--sandbox-processes",
        type=int,
        default=1,
        help="processes answering as Keepit (a real Keepit is not one Python process)",
    )
    parser.add_argument(
        "--child", choices=["floor", "floor-audit", "sync", "naive"], help=argparse.SUPPRESS
    )
    parser.add_argument("--budget", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--database", default="vectis_bench", help=argparse.SUPPRESS)
    parser.add_argument("--template", help=argparse.SUPPRESS)
    parser.add_argument("--parent", help=argparse.SUPPRESS)
    parser.add_argument("--now", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        handler = {
            "floor": child_floor,
            "floor-audit": child_floor_audit,
            "sync": child_sync,
            "naive": child_naive,
        }[args.child]
        print(json.dumps(handler(args)))
        return 0

    print(
        f"Sandbox: {args.accounts} accounts x {args.connectors} connectors, {args.events} "
        f"audit records/account/day, {args.latency_ms} ms latency",
        file=sys.stderr,
    )
    recreate_database("vectis_bench")
    results: dict[str, Any] = {}
    sandbox = Sandbox(args, accounts=args.accounts, start=START)
    try:
        results["floor"] = run_child(
            args, "floor", database="vectis_bench", sandbox=sandbox, now=START
        )
        results["initial"] = run_child(
            args, "sync", database="vectis_bench", sandbox=sandbox, now=START
        )
    finally:
        sandbox.stop()
    later = START + timedelta(minutes=15)
    sandbox = Sandbox(args, accounts=args.accounts, start=later)
    try:
        results["incremental"] = run_child(
            args, "sync", database="vectis_bench", sandbox=sandbox, now=later
        )
        # The steady state: the 28-day backfill (one more past day per sync) is over.
        results["no_change"] = run_child(
            args,
            "sync",
            database="vectis_bench",
            sandbox=sandbox,
            now=later,
            env={"KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC": "0"},
        )
    finally:
        sandbox.stop()

    naive_accounts = args.naive_accounts or args.accounts
    recreate_database("vectis_bench_naive")
    sandbox = Sandbox(args, accounts=naive_accounts, start=START)
    try:
        naive = run_child(args, "naive", database="vectis_bench_naive", sandbox=sandbox, now=START)
    finally:
        sandbox.stop()
    scale = args.accounts / naive_accounts
    naive["measured_accounts"] = naive_accounts
    naive["scale_to_full_size"] = scale
    for key in ("seconds", "http_requests", "sql_queries", "write_statements", "row_writes"):
        naive[f"{key}_full_size"] = round(naive[key] * scale, 1)
    results["naive"] = naive

    initial, floor = results["initial"]["seconds"], results["floor"]["seconds"]
    concurrency = int(os.environ.get("KEEPIT_HTTP_CONCURRENCY", "8"))

    def latency_bound(phase: str) -> float:
        """The time the requests this phase really made would take at the latency alone,
        `KEEPIT_HTTP_CONCURRENCY` at a time: what no client of this Keepit can beat."""
        requests = int(results[phase]["http_requests"])
        return round(requests * int(args.latency_ms) / 1000 / concurrency, 2)

    bound = {phase: latency_bound(phase) for phase in ("floor", "initial", "incremental")}
    summary = {
        "accounts": args.accounts,
        "connectors_per_account": args.connectors,
        "events_per_account_per_day": args.events,
        "latency_ms": args.latency_ms,
        "initial_sync_s": initial,
        "incremental_sync_s": results["incremental"]["seconds"],
        "no_change_sync_s": results["no_change"]["seconds"],
        "fetch_floor_s": floor,
        "naive_initial_s": naive["seconds_full_size"],
        "naive_measured_on_accounts": naive_accounts,
        "latency_bound_s": bound["initial"],
        "incremental_latency_bound_s": bound["incremental"],
        "initial_vs_latency_bound": round(initial / bound["initial"], 2),
        "incremental_vs_latency_bound": round(
            results["incremental"]["seconds"] / bound["incremental"], 2
        ),
        "initial_vs_floor": round(initial / floor, 2),
        "naive_vs_initial": round(naive["seconds_full_size"] / initial, 1),
        "no_change_row_writes": results["no_change"]["row_writes"],
        "http_requests": {k: v["http_requests"] for k, v in results.items()},
        "sql_queries": {k: v["sql_queries"] for k, v in results.items()},
        "row_writes": {k: v["row_writes"] for k, v in results.items()},
        "peak_rss_mb": {k: v["peak_rss_mb"] for k, v in results.items()},
        "events_added_initial": results["initial"]["counts"]["events_added"],
        "targets_met": {
            "initial_within_1_6x_latency_bound": initial <= 1.6 * bound["initial"],
            "incremental_within_1_3x_latency_bound": results["incremental"]["seconds"]
            <= 1.3 * bound["incremental"],
            "initial_within_1_15x_floor": initial <= 1.15 * floor,
            "initial_5x_faster_than_naive": naive["seconds_full_size"] >= 5 * initial,
            "no_change_writes_zero_rows": results["no_change"]["row_writes"] == 0,
            "peak_rss_under_300_mb": results["initial"]["peak_rss_mb"] < 300,
        },
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
