"""Shared fixtures: a real Celery worker process, admin users."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from integrations.models import Connection, SyncRun
from tests.mail import smtp  # noqa: F401  (a fixture: a local SMTP server for any test)

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"


def subprocess_env(**overrides: str) -> dict[str, str]:
    """The environment a child process (worker, manage.py) gets: the test settings'
    database and broker, plus overrides."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "vectis.settings_test",
            "VECTIS_ENV_FILE": "",
            "PYTHONPATH": str(ROOT),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        }
    )
    env.update(overrides)
    return env


def query_plan(sql: str, *, table: str, expensive: str) -> str:
    """PostgreSQL's plan of `sql` (inside the test's transaction), with `table`'s
    statistics fresh and one way of reading made expensive (`enable_seqscan`,
    `enable_sort`): a test that an index serves a query names the index in the plan."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {table}")
        cursor.execute(f"SET LOCAL {expensive} = off")
        cursor.execute("EXPLAIN " + sql)
        return "\n".join(row[0] for row in cursor.fetchall())


def manage(
    *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`manage.py …` in a child process (`subprocess_env()` unless `env`), its output
    captured as text."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env or subprocess_env(),
        capture_output=True,
        text=True,
        check=check,
    )


def database_url() -> str:
    """URL of the database the tests use (pytest-django's test database)."""
    db: dict[str, Any] = settings.DATABASES["default"]
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


@pytest.fixture(scope="session")
def worker_sandbox() -> Iterator[Any]:
    """A Keepit sandbox on real time, known to the worker process."""
    from keepit_sandbox import KeepitSandbox, SandboxConfig

    with KeepitSandbox(SandboxConfig(accounts=6, events_per_account_per_day=4)) as running:
        yield running


@contextlib.contextmanager
def celery_worker(
    name: str, *, pool: str = "solo", **env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A real `celery worker` process on the Redis broker, using the test database (and
    `env` on top of the test settings), until the block ends. Its log lands in
    artifacts/celery-<name>.log. `pool="prefork"` for time limits (which the solo pool
    does not enforce), with one child, as production workers run them."""
    from vectis.celery import app

    log_path = ARTIFACTS / f"celery-{name}.log"
    log_path.parent.mkdir(exist_ok=True)
    hostname = f"{name}-{os.getpid()}@%h"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "vectis",
                "worker",
                f"--pool={pool}",
                "--concurrency=1",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--hostname",
                hostname,
            ],
            cwd=ROOT,
            env=subprocess_env(
                DATABASE_URL=database_url(), CELERY_TASK_ALWAYS_EAGER="false", **env
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            expected = hostname.replace("%h", socket.gethostname())
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise RuntimeError(f"celery worker exited early; see {log_path}")
                replies = app.control.ping(destination=[expected], timeout=1.0)
                if replies:
                    break
            else:
                raise RuntimeError(f"celery worker did not answer within 60 s; see {log_path}")
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)


@pytest.fixture(scope="module")
def celery_worker_process(
    django_db_setup: None, django_db_blocker: Any, worker_sandbox: Any
) -> Iterator[subprocess.Popen[bytes]]:
    """A real worker using the worker sandbox. Per module: a worker left running would
    pick up the tasks other tests queue (an alert evaluation after a sync, at the real
    time) and change their data behind their back."""
    from vectis.celery import app

    app.control.purge()  # drop messages left by an earlier, interrupted run
    with celery_worker(
        "worker", KEEPIT_BASE_URL_TEMPLATE=worker_sandbox.base_url_template
    ) as process:
        yield process


@pytest.fixture
def admin_user(db: None) -> User:
    return User.objects.create_superuser("admin", "admin@example.com", "admin-password")


@pytest.fixture
def sandbox() -> Iterator[Any]:
    """A small Keepit sandbox on an ephemeral loopback port, its clock frozen."""
    from keepit_sandbox import KeepitSandbox, SandboxConfig

    with KeepitSandbox(
        SandboxConfig(accounts=8, connectors_per_account=4, events_per_account_per_day=6),
        start=datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
        speed=0,
    ) as running:
        yield running


def sandbox_connection(sandbox: Any, *, token: bool = False, enabled: bool = True) -> Connection:
    """A saved Keepit connection to a sandbox's MSP (username/password or its API token)."""
    connection = Connection(
        provider="keepit",
        name="Sandbox",
        enabled=enabled,
        config={
            "region": sandbox.config.region,
            "account_guid": sandbox.msp.parent.guid,
            "username": sandbox.config.username,
            "token_login": sandbox.config.token_login if token else "",
        },
    )
    secrets = {"password": sandbox.config.password}
    if token:
        secrets["token_password"] = sandbox.config.token_password
    connection.set_secrets(secrets)
    connection.save()
    return connection


# --- the sandbox in tests (frozen clock) ----------------------------------------------------

START = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def make_sandbox(**config: Any) -> Any:
    """A started sandbox MSP (8 accounts by default) whose clock stands at START."""
    from keepit_sandbox import KeepitSandbox, SandboxConfig

    defaults: dict[str, Any] = {
        "accounts": 8,
        "connectors_per_account": 4,
        "events_per_account_per_day": 6,
    }
    defaults.update(config)
    return KeepitSandbox(SandboxConfig(**defaults), start=START, speed=0).start()


def slow_sandbox(latency_ms: int = 60) -> Any:
    """A started sandbox MSP of 8 accounts of 2 connectors answering each request after
    `latency_ms`: a sync long enough to watch its progress."""
    from keepit_sandbox import KeepitSandbox, SandboxConfig

    config = SandboxConfig(accounts=8, connectors_per_account=2, events_per_account_per_day=3)
    return KeepitSandbox(config, start=START, speed=0, latency_ms=latency_ms).start()


@pytest.fixture
def quiet_sandbox() -> Iterator[Any]:
    """No own-read audit records: Keepit's data stays the same between syncs."""
    sandbox = make_sandbox(own_read_audit=False)
    yield sandbox
    sandbox.stop()


def connect(sandbox: Any, django_settings: Any, *, token: bool = True) -> Connection:
    """A saved connection to the sandbox, with retries kept short (`django_settings`:
    pytest-django's `settings` fixture)."""
    django_settings.KEEPIT_BASE_URL_TEMPLATE = sandbox.base_url_template
    django_settings.KEEPIT_MAX_ATTEMPTS = 2
    django_settings.KEEPIT_RETRY_BUDGET_SECONDS = 3
    return sandbox_connection(sandbox, token=token)


def lists_due(connection: Connection, now: datetime) -> set[str]:
    """The accounts whose Keepit connector list a sync at `now` reads although nothing
    changed: its moment of the hour has come, or it was never recorded (an account
    without a connector)."""
    from backups.models import AccountLink
    from keepit.inventory import list_due

    links = AccountLink.objects.filter(connection=connection)
    return {
        account
        for account, at in links.values_list("external_id", "connectors_listed_at")
        if at is None or list_due(account, listed_at=at, now=now)
    }


def sync(connection: Connection, sandbox: Any) -> SyncRun:
    """One sync at the sandbox's time."""
    from backups.runner import run_sync

    connection.refresh_from_db()
    return run_sync(connection, now=sandbox.clock.now_datetime())
