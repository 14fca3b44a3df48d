"""The audit events' single-column indexes on connection and customer go: composite
indexes lead with both columns already, and every insert paid for the two extra.

Only the indexes are dropped (by name, brief lock, no table rewrite); the foreign-key
constraints stay as they are — Django's own AlterField would drop and re-add them, which
re-checks every row of a table that may hold millions."""

import django.db.models.deletion
from django.db import migrations, models

INDEXES = {
    "backup_audit_events_connection_id_99d7ec08": "connection_id",
    "backup_audit_events_customer_id_b68e85f0": "customer_id",
}


class Migration(migrations.Migration):
    dependencies = [
        ("backups", "0004_job_days_seats_and_fixes"),
        ("customers", "0002_renormalize_names"),
        ("integrations", "0005_sync_chunks"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="backupauditevent",
                    name="connection",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="audit_events",
                        to="integrations.connection",
                    ),
                ),
                migrations.AlterField(
                    model_name="backupauditevent",
                    name="customer",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="audit_events",
                        to="customers.customer",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    sql=f'DROP INDEX IF EXISTS "{name}"',
                    reverse_sql=f'CREATE INDEX IF NOT EXISTS "{name}" '
                    f'ON "backup_audit_events" ("{column}")',
                )
                for name, column in INDEXES.items()
            ],
        ),
    ]
