"""An index on each connector's failure events by time (failures only), for the alert
evaluation's incremental passes: the failed-backup rule reads the failures inside its
lookback of the few connectors that changed since the last pass. Without it each of
those connectors' events was read through the connector index and filtered (53 ms for
2,400 connectors at 80,000 connectors and 7 million events; 4 ms with it). Partial, so it
holds only the failures (11 MB there); built CONCURRENTLY on PostgreSQL, so the sync's
inserts never wait for it (`sqlmigrate` shows it as a Python operation: CREATE INDEX
CONCURRENTLY "audit_connector_failure_idx" ON "backup_audit_events" ("connector_id",
"occurred_at") WHERE NOT "succeeded")."""

from django.db import migrations, models

from backups.migrations._concurrently import create_index, drop_index

INDEX = models.Index(
    fields=["connector", "occurred_at"],
    condition=models.Q(succeeded=False),
    name="audit_connector_failure_idx",
)


def create(apps, schema_editor):
    create_index(schema_editor, apps.get_model("backups", "BackupAuditEvent"), INDEX)


def drop(apps, schema_editor):
    drop_index(schema_editor, apps.get_model("backups", "BackupAuditEvent"), INDEX)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [("backups", "0008_status_rank_index")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="backupauditevent", index=INDEX)],
            database_operations=[migrations.RunPython(create, drop)],
        )
    ]
