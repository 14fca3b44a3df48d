"""Two indexes on backup_audit_events, built without blocking the syncs.

- audit_unlinked_connector_idx: the sync's relink pass finds events stored before their
  connector was known (partial: only those rows).
- audit_account_idx: moving an account's events when it is linked to a customer.

On PostgreSQL they are built CONCURRENTLY (hence `atomic = False`): no table rewrite
and no write lock on a table that may hold millions of events.
"""

from django.db import migrations, models

from vectis.db.migration_operations import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("backups", "0001_initial"),
        ("integrations", "0002_connection_partial_runs_in_row"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="backupauditevent",
            index=models.Index(
                condition=models.Q(("connector__isnull", True))
                & ~models.Q(("connector_external_id", "")),
                fields=["connection", "connector_external_id"],
                name="audit_unlinked_connector_idx",
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="backupauditevent",
            index=models.Index(
                fields=["connection", "account_external_id"], name="audit_account_idx"
            ),
        ),
    ]
