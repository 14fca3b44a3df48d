"""An index on when backup jobs failed (failures only), for the backup-failed rule's read
of every failure inside its lookback: without it, each evaluation scanned every failure
kept (150-250 ms at 80,000 connectors). Partial, so it holds only the few failure rows;
built CONCURRENTLY on PostgreSQL so the job days are never locked for the sync's writes
(`sqlmigrate` shows it as a Python operation: CREATE INDEX CONCURRENTLY
"job_day_failure_recent_idx" ON "backup_job_days" ("last_failure_at") WHERE
"last_failure_at" IS NOT NULL)."""

from django.db import migrations, models

from backups.migrations._concurrently import create_index, drop_index

NAME = "job_day_failure_recent_idx"
INDEX = models.Index(
    fields=["last_failure_at"],
    condition=models.Q(last_failure_at__isnull=False),
    name=NAME,
)


def create(apps, schema_editor):
    create_index(schema_editor, apps.get_model("backups", "BackupJobDay"), INDEX)


def drop(apps, schema_editor):
    drop_index(schema_editor, apps.get_model("backups", "BackupJobDay"), INDEX)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [("backups", "0006_time_brin_indexes")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="backupjobday", index=INDEX)],
            database_operations=[migrations.RunPython(create, drop)],
        )
    ]
