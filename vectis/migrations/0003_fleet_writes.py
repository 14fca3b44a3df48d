"""The marks that let the fleet-wide tiles be kept between page views (vectis.fleet_tiles):
`fleet_writes`, one row per transaction that wrote connectors, their status rows, account
links or alerts.

On PostgreSQL a statement trigger on each of those tables adds the row, in the writer's
own transaction and once per transaction (a transaction-local setting remembers it), so
the mark becomes visible exactly when the writes do — rolled back with them, savepoints
included. A statement that changes nothing still marks (the tiles are counted again once,
never wrong). SQLite (the demo) has no triggers here: the tiles are counted on every view
there.

Creating an empty table and the triggers rewrites nothing, but each trigger locks its
table against writes for a moment (SHARE ROW EXCLUSIVE), after any transaction still
writing to it: run it between syncs. It gives up after 10 s (lock_timeout) rather than
hold every sync's writes in a queue behind it; run `migrate` again then."""

from django.db import migrations, models

TABLES = ("backup_connectors", "backup_connector_status", "integration_account_links", "alerts")

FUNCTION = """
CREATE FUNCTION fleet_write_mark() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  writer text := pg_current_xact_id()::text;
BEGIN
  IF current_setting('vectis.fleet_write', true) IS DISTINCT FROM writer THEN
    INSERT INTO fleet_writes (xid, written_at) VALUES (writer::bigint, now());
    PERFORM set_config('vectis.fleet_write', writer, true);
  END IF;
  RETURN NULL;
END
$$;"""


def create_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("SET LOCAL lock_timeout = '10s'")
    schema_editor.execute(FUNCTION)
    for table in TABLES:
        schema_editor.execute(
            f"CREATE TRIGGER {table}_fleet_write AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
            f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION fleet_write_mark()"
        )


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("SET LOCAL lock_timeout = '10s'")
    for table in TABLES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_fleet_write ON {table}")
    schema_editor.execute("DROP FUNCTION IF EXISTS fleet_write_mark()")


class Migration(migrations.Migration):

    dependencies = [
        ("vectis", "0002_api_keys"),
        ("alerts", "0015_alert_resolved_key_index"),
        ("backups", "0010_stale_crossing_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="FleetWrite",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("xid", models.BigIntegerField()),
                ("written_at", models.DateTimeField()),
            ],
            options={
                "db_table": "fleet_writes",
                "indexes": [models.Index(fields=["xid"], name="fleet_write_xid_idx")],
            },
        ),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
