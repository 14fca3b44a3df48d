"""The attention list's order as an index on the status rows (rank, then oldest success
first): the dashboard's first page is read from it instead of sorting every connector.
A plain CREATE INDEX: the status table has one row per connector (80,000 rows: about
0.1 s, during which a sync's status writes wait).

SQLite (the demo) refuses NULLS FIRST in an index; it sorts NULLs first in ascending
order anyway, so there the index is built without the words (same order)."""

from django.db import migrations, models

NAME = "connector_status_rank_idx"


def _rank() -> models.Case:
    return models.Case(
        models.When(status="failed", then=models.Value(0)),
        models.When(status="warning", then=models.Value(1)),
        models.When(status="unknown", then=models.Value(2)),
        models.When(status="onboarding", then=models.Value(3)),
        models.When(status="ok", then=models.Value(4)),
        default=models.Value(9),
        output_field=models.IntegerField(),
    )


INDEX = models.Index(
    _rank(), models.OrderBy(models.F("last_success_at"), nulls_first=True), name=NAME
)


def _index_here(schema_editor) -> models.Index:
    if schema_editor.connection.vendor == "postgresql":
        return INDEX
    return models.Index(_rank(), models.F("last_success_at").asc(), name=NAME)


def create(apps, schema_editor):
    model = apps.get_model("backups", "BackupConnectorStatus")
    schema_editor.add_index(model, _index_here(schema_editor))


def drop(apps, schema_editor):
    model = apps.get_model("backups", "BackupConnectorStatus")
    schema_editor.remove_index(model, _index_here(schema_editor))


class Migration(migrations.Migration):

    dependencies = [
        ("backups", "0007_job_day_failure_recent_idx"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="backupconnectorstatus", index=INDEX)],
            database_operations=[migrations.RunPython(create, drop)],
        )
    ]
