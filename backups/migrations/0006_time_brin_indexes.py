"""Block-range (BRIN) indexes on when audit events happened and on job days, for the
retention pruning (vectis/retention.py). Rows arrive roughly in time order, so a BRIN
index finds the old ones while costing next to nothing to keep up on every insert (a
B-tree on the audit events would add one more index write per row). PostgreSQL only
(SQLite, the demo's database, has no BRIN and prunes little); built CONCURRENTLY so a
table holding millions of rows is never locked for writes."""

from django.db import migrations

INDEXES = {
    "audit_occurred_brin": ("backup_audit_events", "occurred_at"),
    "job_day_day_brin": ("backup_job_days", "day"),
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, (table, column) in INDEXES.items():
        schema_editor.execute(
            f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{name}" ON "{table}" USING brin ("{column}")'
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [("backups", "0005_audit_events_fewer_indexes")]

    operations = [migrations.RunPython(create, drop)]
