"""How the sync scales with the MSP (`make bench-scale`): the initial and the incremental
sync at several sizes (default 500, 1,000, 2,000 and 4,000 accounts x 4 connectors, 25
audit records per account per day, 20 ms latency), each in its own process, on
PostgreSQL; a straight line fitted through time and peak memory against accounts, and
its prediction at 20,000 accounts. Then the same MSP synced through real Celery workers
on Redis — one worker, then two — to show the parts spread over workers.

Targets at 20,000 accounts (predicted): incremental sync ≤ 300 s, initial ≤ 900 s, peak
RSS ≤ 300 MB. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sync_bench import START, Sandbox, recreate_database, run_child  # noqa: E402

TARGET_ACCOUNTS = 20_000
DATABASE = "vectis_bench_scale"
BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/14")


def fit(points: list[tuple[float, float]]) -> dict[str, float]:
    """Least squares y = a + b·x, its r², and y at TARGET_ACCOUNTS."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    slope = sxy / sxx if sxx else 0.0
    intercept = mean_y - slope * mean_x
    total = sum((y - mean_y) ** 2 for _, y in points)
    residual = sum((y - (intercept + slope * x)) ** 2 for x, y in points)
    return {
        "intercept": round(intercept, 3),
        "per_1000_accounts": round(slope * 1000, 3),
        "r2": round(1 - residual / total, 4) if total else 1.0,
        "at_20000_accounts": round(intercept + slope * TARGET_ACCOUNTS, 1),
    }


def sync_sizes(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for accounts in args.sizes:
        print(f"{accounts} accounts:", file=sys.stderr, flush=True)
        args.accounts = accounts
        recreate_database(DATABASE)
        sandbox = Sandbox(args, accounts=accounts, start=START)
        try:
            initial = run_child(args, "sync", database=DATABASE, sandbox=sandbox, now=START)
        finally:
            sandbox.stop()
        later = START + timedelta(minutes=15)
        sandbox = Sandbox(args, accounts=accounts, start=later)
        try:
            incremental = run_child(args, "sync", database=DATABASE, sandbox=sandbox, now=later)
        finally:
            sandbox.stop()
        rows.append(
            {
                "accounts": accounts,
                "initial_s": initial["seconds"],
                "initial_requests": initial["http_requests"],
                "initial_peak_rss_mb": initial["peak_rss_mb"],
                "incremental_s": incremental["seconds"],
                "incremental_requests": incremental["http_requests"],
                "incremental_peak_rss_mb": incremental["peak_rss_mb"],
            }
        )
    return rows


def workers_run(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    """The initial sync of `args.worker_accounts` accounts through `workers` real Celery
    workers (one process each) on Redis; the time from queueing to the run's end."""
    recreate_database(DATABASE)
    database_url = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
    sandbox = Sandbox(args, accounts=args.worker_accounts, start=START)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "vectis.settings_test",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": BROKER,
        "KEEPIT_BASE_URL_TEMPLATE": sandbox.template,
        "VECTIS_SYNC_CHUNK_ACCOUNTS": str(args.chunk_accounts),
        "KEEPIT_STORE_OWN_READS": "true",
    }
    processes = []
    try:
        subprocess.run(
            [sys.executable, "-m", "celery", "-A", "vectis", "purge", "-f"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        for number in range(workers):
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "vectis",
                        "worker",
                        "--pool=prefork",
                        "--concurrency=1",
                        "--without-gossip",
                        "--without-mingle",
                        "--loglevel=WARNING",
                        "--hostname",
                        f"bench-{number}@%h",
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(6)  # the workers connect to the broker
        result = subprocess.run(
            [sys.executable, __file__, "--child-queue", "--database", database_url],
            cwd=ROOT,
            env={**env, "BENCH_TEMPLATE": sandbox.template, "BENCH_PARENT": sandbox.parent},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"the queued sync failed:\n{result.stderr[-3000:]}")
        figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        sandbox.stop()
    figures["workers"] = workers
    print(
        f"  {workers} worker(s): {figures['seconds']} s, {figures['parts']} parts on "
        f"{figures['processes']} process(es), {figures['outcome']}",
        file=sys.stderr,
        flush=True,
    )
    return figures


def child_queue() -> None:
    """Queue the bench connection's sync, wait for its run to end, print its figures."""
    os.environ["DATABASE_URL"] = sys.argv[sys.argv.index("--database") + 1]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vectis.settings_test")
    import django

    django.setup()
    from backups.tasks import sync_connection
    from bench.sync_bench import bench_connection
    from integrations.models import SyncRun

    connection = bench_connection(os.environ["BENCH_TEMPLATE"], os.environ["BENCH_PARENT"])
    started = time.perf_counter()
    sync_connection.delay(connection.pk, "manual")
    while True:
        run = SyncRun.objects.filter(connection=connection).exclude(outcome="running").first()
        if run is not None:
            break
        if time.perf_counter() - started > 3600:
            raise RuntimeError("the sync did not end within an hour")
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    parts = list(run.chunks.exclude(kind="plan"))
    print(
        json.dumps(
            {
                "seconds": round(seconds, 2),
                "outcome": run.outcome,
                "parts": len(parts),
                "processes": len({part.worker for part in parts}),
                "http_requests": run.http_requests,
            }
        )
    )


def main() -> int:
    if "--child-queue" in sys.argv:
        child_queue()
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000, 4000])
    parser.add_argument("--connectors", type=int, default=4)
    parser.add_argument("--events", type=int, default=25, help="audit records per account per day")
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--port", type=int, default=9320)
    parser.add_argument("--sandbox-processes", type=int, default=1)
    parser.add_argument(
        "--worker-accounts", type=int, default=1000, help="MSP size of the workers' runs"
    )
    parser.add_argument("--chunk-accounts", type=int, default=250)
    args = parser.parse_args()
    rows = sync_sizes(args)
    initial = fit([(r["accounts"], r["initial_s"]) for r in rows])
    incremental = fit([(r["accounts"], r["incremental_s"]) for r in rows])
    rss = fit(
        [(r["accounts"], max(r["initial_peak_rss_mb"], r["incremental_peak_rss_mb"])) for r in rows]
    )
    print("workers:", file=sys.stderr, flush=True)
    one = workers_run(args, 1)
    two = workers_run(args, 2)
    summary = {
        "sizes": rows,
        "fit_initial_s": initial,
        "fit_incremental_s": incremental,
        "fit_peak_rss_mb": rss,
        "predicted_at_20000_accounts": {
            "initial_s": initial["at_20000_accounts"],
            "incremental_s": incremental["at_20000_accounts"],
            "peak_rss_mb": rss["at_20000_accounts"],
        },
        "workers": {
            "accounts": args.worker_accounts,
            "one_worker_s": one["seconds"],
            "two_workers_s": two["seconds"],
            "speed_up": round(one["seconds"] / two["seconds"], 2),
            "processes_used": {"one": one["processes"], "two": two["processes"]},
        },
        "targets_met": {
            "incremental_at_20000_under_300_s": incremental["at_20000_accounts"] <= 300,
            "initial_at_20000_under_900_s": initial["at_20000_accounts"] <= 900,
            "peak_rss_at_20000_under_300_mb": rss["at_20000_accounts"] <= 300,
        },
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
