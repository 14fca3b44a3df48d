"""Two indexes on backup_audit_events, built without blocking the syncs.

- audit_unlinked_connector_idx: the sync's relink pass finds events stored before their
  connector was known (partial: only those rows).
- audit_account_idx: moving an account's events when it is linked to a customer.

On PostgreSQL they are built CONCURRENTLY (hence `atomic = False`): no table rewrite
and no write lock on a table that may hold millions of events.
"""

from typing import Any

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class AddIndexConcurrentlyOnPostgres(migrations.AddIndex):
    """CREATE INDEX CONCURRENTLY on PostgreSQL (no write lock while it builds); a plain
    CREATE INDEX elsewhere (the SQLite demo)."""

    def database_forwards(self, app_label: str, schema_editor: Any, *states: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            AddIndexConcurrently(self.model_name, self.index).database_forwards(
                app_label, schema_editor, *states
            )
        else:
            super().database_forwards(app_label, schema_editor, *states)

    def database_backwards(self, app_label: str, schema_editor: Any, *states: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            AddIndexConcurrently(self.model_name, self.index).database_backwards(
                app_label, schema_editor, *states
            )
        else:
            super().database_backwards(app_label, schema_editor, *states)


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
