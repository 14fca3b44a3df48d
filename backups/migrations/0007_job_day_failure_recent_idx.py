"""An index on when backup jobs failed (failures only), for the backup-failed rule's read
of every failure inside its lookback: without it, each evaluation scanned every failure
kept (150-250 ms at 80,000 connectors). Partial, so it holds only the few failure rows;
built CONCURRENTLY on PostgreSQL so the job days are never locked for the sync's writes
(`sqlmigrate` shows it as a Python operation: CREATE INDEX CONCURRENTLY
"job_day_failure_recent_idx" ON "backup_job_days" ("last_failure_at") WHERE
"last_failure_at" IS NOT NULL)."""

from django.db import migrations, models

NAME = "job_day_failure_recent_idx"
INDEX = models.Index(
    fields=["last_failure_at"],
    condition=models.Q(last_failure_at__isnull=False),
    name=NAME,
)


def create(apps, schema_editor):
    model = apps.get_model("backups", "BackupJobDay")
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            # The index of that name on the job days' own table (in its schema): an
            # index of that name elsewhere, even on the search path, is not this one.
            cursor.execute(
                "SELECT i.indisvalid, n.nspname FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE i.indrelid = to_regclass(%s) AND c.relname = %s",
                [schema_editor.quote_name(model._meta.db_table), NAME],
            )
            found = cursor.fetchone()
        if found is not None and found[0]:
            return  # already built
        if found is not None:
            # A build that failed half-way leaves an INVALID index of that name behind.
            quote = schema_editor.quote_name
            schema_editor.execute(f"DROP INDEX CONCURRENTLY {quote(found[1])}.{quote(NAME)}")
        schema_editor.add_index(model, INDEX, concurrently=True)
    else:
        schema_editor.add_index(model, INDEX)


def drop(apps, schema_editor):
    model = apps.get_model("backups", "BackupJobDay")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.remove_index(model, INDEX, concurrently=True)
    else:
        schema_editor.remove_index(model, INDEX)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [("backups", "0006_time_brin_indexes")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="backupjobday", index=INDEX)],
            database_operations=[migrations.RunPython(create, drop)],
        )
    ]
