"""The foundation: contract tables, Celery through Redis, beat schedule, /healthz, settings."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from io import StringIO

import pytest
import yaml
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.test import Client, override_settings

from tests.conftest import ROOT, subprocess_env

CONTRACT_COLUMNS = {
    "customers": {"id", "name", "created_at", "updated_at"},
    "backup_connectors": {
        "id",
        "customer_id",
        "external_id",
        "name",
        "kind",
        "vendor_type",
        "first_seen_at",
        "last_seen_at",
        "removed_at",
    },
    "backup_connector_status": {
        "connector_id",
        "status",
        "health",
        "reason",
        "last_backup_at",
        "last_success_at",
        "checked_at",
    },
    "backup_audit_events": {
        "id",
        "customer_id",
        "connector_id",
        "occurred_at",
        "category",
        "area",
        "message",
        "actor",
        "succeeded",
        "dedup_key",
    },
}


@pytest.mark.django_db
def test_migrations_create_the_contract_tables_with_their_columns_on_postgresql() -> None:
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor))
        for table, expected in CONTRACT_COLUMNS.items():
            assert table in tables
            columns = {
                c.name for c in connection.introspection.get_table_description(cursor, table)
            }
            assert expected <= columns, f"{table} lacks {expected - columns}"


@pytest.mark.django_db
def test_backup_connector_status_has_one_row_per_connector() -> None:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "backup_connector_status")
    primary = [c for c in constraints.values() if c["primary_key"]]
    assert [c["columns"] for c in primary] == [["connector_id"]]


@pytest.mark.django_db
def test_no_model_change_lacks_a_migration() -> None:
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.worker
def test_a_task_sent_through_redis_is_run_by_a_real_worker(celery_worker_process: object) -> None:
    from vectis.celery import app, ping

    assert app.conf.broker_url.startswith("redis://")
    assert ping.delay().get(timeout=30) == "pong"


def test_beat_looks_for_due_syncs_every_minute_and_the_interval_is_15_minutes() -> None:
    from django.conf import settings

    from vectis.celery import app

    app.loader.import_default_modules()  # what a worker does at start: autodiscover tasks
    entry = app.conf.beat_schedule["sync-due-connections"]
    assert entry["task"] == "integrations.tasks.sync_due_connections"
    assert entry["schedule"] == timedelta(minutes=1)
    assert entry["options"]["expires"] == 60
    assert entry["task"] in app.tasks
    assert settings.VECTIS_SYNC_INTERVAL_MINUTES == 15


def interval_with(**env: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.VECTIS_SYNC_INTERVAL_MINUTES, settings.VECTIS_SYNC_TICK_SECONDS)"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(**env),
        check=True,
    )


def test_the_sync_interval_follows_vectis_sync_interval_minutes() -> None:
    result = interval_with(VECTIS_SYNC_INTERVAL_MINUTES="5", VECTIS_SYNC_TICK_SECONDS="30")
    assert result.stdout.strip().splitlines()[-1] == "5 30"
    assert "deprecated" not in result.stderr


def test_the_old_keepit_name_of_the_interval_still_works_with_a_warning() -> None:
    result = interval_with(KEEPIT_SYNC_INTERVAL_MINUTES="7")
    assert result.stdout.strip().splitlines()[-1] == "7 60"
    assert (
        "KEEPIT_SYNC_INTERVAL_MINUTES is deprecated: rename it VECTIS_SYNC_INTERVAL_MINUTES."
        in result.stderr
    )
    both = interval_with(KEEPIT_SYNC_INTERVAL_MINUTES="7", VECTIS_SYNC_INTERVAL_MINUTES="9")
    assert both.stdout.strip().splitlines()[-1] == "9 60"  # the new name wins


def test_startup_refuses_a_stale_limit_below_three_heartbeats() -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(VECTIS_SYNC_HEARTBEAT_SECONDS="15", VECTIS_SYNC_STALE_SECONDS="40"),
    )
    assert result.returncode != 0
    assert (
        "VECTIS_SYNC_STALE_SECONDS (40) must be at least three heartbeats "
        "(3 x VECTIS_SYNC_HEARTBEAT_SECONDS = 45 s)"
    ) in result.stderr
    fine = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(VECTIS_SYNC_HEARTBEAT_SECONDS="15", VECTIS_SYNC_STALE_SECONDS="45"),
    )
    assert fine.returncode == 0, fine.stderr


@pytest.mark.django_db
def test_healthz_is_200_when_database_and_broker_answer(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_healthz_is_503_naming_the_broker_when_the_broker_is_down(client: Client) -> None:
    with override_settings(CELERY_BROKER_URL="redis://127.0.0.1:1/0"):
        response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["broker"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("unreachable")


@pytest.mark.parametrize("missing", ["SECRET_KEY", "VECTIS_ENCRYPTION_KEYS"])
def test_startup_without_debug_and_without_a_secret_fails_clearly(missing: str) -> None:
    env = subprocess_env(DEBUG="false", DJANGO_SETTINGS_MODULE="vectis.settings")
    env.pop(missing, None)
    env.setdefault("SECRET_KEY", "x")
    env.setdefault("VECTIS_ENCRYPTION_KEYS", "ZGV2LW9ubHktZGV2LW9ubHktZGV2LW9ubHktZGV2LW8=")
    env.pop(missing)
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode != 0
    assert f"{missing} is not set" in result.stderr
    assert "DEBUG off" in result.stderr


@pytest.mark.django_db
def test_admin_is_branded_vectis_and_grouped_by_section(client: Client, admin_user: User) -> None:
    client.force_login(admin_user)
    html = client.get("/admin/").content.decode()
    assert "<title>Backup monitoring · Vectis</title>" in html
    positions = [html.find(f">{title}<") for title in ("Integrations", "Customers", "Backups")]
    assert all(p > 0 for p in positions)
    assert positions == sorted(positions)
    # A provider's app (here Keepit's connections) sits under Integrations, not a section
    # of its own: found from VECTIS_PROVIDERS, not from a list naming the vendor.
    response = client.get("/admin/")
    sections = {app["name"]: app for app in response.context["app_list"]}
    assert "Keepit" not in sections
    assert "keepitconnection" in {
        m["object_name"].lower() for m in sections["Integrations"]["models"]
    }


def test_docker_compose_defines_the_stack_wired_by_environment() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "web", "worker", "beat", "mailpit"} <= set(services)
    assert "gunicorn" in " ".join(services["web"]["command"])
    for name in ("web", "worker", "beat"):
        environment = services[name]["environment"]
        assert environment["DATABASE_URL"].startswith("postgres://")
        assert environment["CELERY_BROKER_URL"].startswith("redis://redis")
        assert "smtp://mailpit" in environment["EMAIL_URL"]
    assert "celery" in " ".join(services["worker"]["command"])
    assert "beat" in services["beat"]["command"]
    assert (ROOT / "Dockerfile").read_text().startswith("FROM python:3.11")


def test_env_example_lists_every_configuration_variable() -> None:
    """Every variable the settings read (`env.<type>("NAME", ...)`) is in .env.example."""
    import re

    settings_source = (ROOT / "vectis" / "settings.py").read_text()
    read = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z][A-Z0-9_]+)"', settings_source))
    read |= set(re.findall(r'_required_secret\(\s*"([A-Z][A-Z0-9_]+)"', settings_source))
    assert {"SECRET_KEY", "DATABASE_URL", "VECTIS_SYNC_INTERVAL_MINUTES"} <= read
    assert len(read) > 25
    text = (ROOT / ".env.example").read_text()
    missing = sorted(v for v in read if f"\n{v}=" not in text and f"\n# {v}=" not in text)
    assert missing == []
