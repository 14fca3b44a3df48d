"""Migrations of the backups app against a real PostgreSQL."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def _migrate(target: list[tuple[str, str]] | None = None) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target or executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_the_failure_index_is_built_when_another_schema_has_an_index_of_that_name() -> None:
    """Migration 0007 skips building an index that is already there (a build retried after
    a crash). An index of the same name in another schema (another app's tables, a copy of
    the database), even one on the search path, is not ours: the job days must still get
    theirs, and the other one is left alone."""
    _migrate([("backups", "0006_time_brin_indexes")])
    try:
        with connection.cursor() as cursor:
            cursor.execute("CREATE SCHEMA elsewhere")
            cursor.execute("CREATE TABLE elsewhere.days (at timestamptz)")
            cursor.execute("CREATE INDEX job_day_failure_recent_idx ON elsewhere.days (at)")
            # On the search path too (after the tables' own schema).
            cursor.execute("SET search_path = public, elsewhere")
        _migrate()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT indexrelid::regclass::text, indrelid::regclass::text, indisvalid "
                "FROM pg_index WHERE indexrelid::regclass::text LIKE '%job_day_failure_recent_idx'"
                " ORDER BY 1"
            )
            assert cursor.fetchall() == [
                ("elsewhere.job_day_failure_recent_idx", "days", True),  # days: on the path
                ("job_day_failure_recent_idx", "backup_job_days", True),
            ]
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET search_path")
            cursor.execute("DROP SCHEMA IF EXISTS elsewhere CASCADE")
        _migrate()


@pytest.mark.django_db(transaction=True)
def test_a_failure_index_left_invalid_by_a_crashed_build_is_built_again() -> None:
    """A CREATE INDEX CONCURRENTLY that fails half-way leaves an INVALID index of that name,
    which PostgreSQL keeps up to date but never reads: the migration drops and rebuilds it."""
    _migrate([("backups", "0006_time_brin_indexes")])
    with connection.cursor() as cursor:
        cursor.execute("CREATE INDEX job_day_failure_recent_idx ON backup_job_days (day)")
        # What a crashed build leaves behind (the test runs as a superuser).
        cursor.execute(
            "UPDATE pg_index SET indisvalid = false "
            "WHERE indexrelid = to_regclass('job_day_failure_recent_idx')"
        )
    _migrate()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indisvalid, pg_get_indexdef(indexrelid) FROM pg_index "
            "WHERE indexrelid = to_regclass('job_day_failure_recent_idx')"
        )
        [(valid, definition)] = cursor.fetchall()
    assert valid
    assert "(last_failure_at) WHERE (last_failure_at IS NOT NULL)" in definition
