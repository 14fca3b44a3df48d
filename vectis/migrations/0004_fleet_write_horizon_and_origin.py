"""The dashboard's change marks (0003), after a review:

- a mark records the oldest transaction still running when it was written (`horizon`)
  and the database's clock then (`clock_timestamp()`, not the writer's start): pruning
  drops only marks below the horizon of a mark a day old, which no snapshot still in
  use can need — by time alone, a transaction open for a day that commits just now would
  lose its mark while tiles counted before it are still kept;
- an UPDATE marks only when it sets a column the tiles count (a status row's status or
  last success, a connector's removal or account, an account's state, an alert's
  resolution or connector): the daily `checked_at` refresh, an acknowledgement or an
  alert's new words no longer make every view count again. Inserts, deletes and
  TRUNCATE still mark on every statement;
- `fleet_origin`, an UNLOGGED table of one random token: crash recovery empties it, so
  tiles kept before a crash (which may have seen writes the crash undid, with their
  transaction ids given out again) are never taken for the database after it.

Adding a column with a constant default rewrites nothing; replacing a trigger locks its
table against writes for a moment (SHARE ROW EXCLUSIVE), and gives up after 10 s
(lock_timeout) rather than hold every sync's writes behind it: run `migrate` again then."""

from django.db import migrations, models

# table -> the columns whose UPDATE changes a tile (vectis.fleet_tiles).
COUNTED = {
    "backup_connectors": ("removed_at", "account_link_id"),
    "backup_connector_status": ("status", "last_success_at", "connector_id"),
    "integration_account_links": ("state",),
    "alerts": ("resolved_at", "connector_id"),
}

FUNCTION = """
CREATE OR REPLACE FUNCTION fleet_write_mark() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  writer text := pg_current_xact_id()::text;
BEGIN
  IF current_setting('vectis.fleet_write', true) IS DISTINCT FROM writer THEN
    INSERT INTO fleet_writes (xid, written_at, horizon) VALUES (
      writer::bigint, clock_timestamp(),
      pg_snapshot_xmin(pg_current_snapshot())::text::bigint
    );
    PERFORM set_config('vectis.fleet_write', writer, true);
  END IF;
  RETURN NULL;
END
$$;"""

OLD_FUNCTION = """
CREATE OR REPLACE FUNCTION fleet_write_mark() RETURNS trigger LANGUAGE plpgsql AS $$
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


def _replace_trigger(schema_editor, table: str, update: str) -> None:
    schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_fleet_write ON {table}")
    schema_editor.execute(
        f"CREATE TRIGGER {table}_fleet_write AFTER INSERT OR {update} OR DELETE OR TRUNCATE "
        f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION fleet_write_mark()"
    )


def narrow(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("SET LOCAL lock_timeout = '10s'")
    schema_editor.execute(FUNCTION)
    for table, columns in COUNTED.items():
        _replace_trigger(schema_editor, table, f"UPDATE OF {', '.join(columns)}")
    schema_editor.execute(
        "CREATE UNLOGGED TABLE fleet_origin (one boolean PRIMARY KEY DEFAULT true CHECK (one),"
        " token uuid NOT NULL DEFAULT gen_random_uuid())"
    )


def widen(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("SET LOCAL lock_timeout = '10s'")
    schema_editor.execute("DROP TABLE IF EXISTS fleet_origin")
    for table in COUNTED:
        _replace_trigger(schema_editor, table, "UPDATE")
    schema_editor.execute(OLD_FUNCTION)


class Migration(migrations.Migration):

    dependencies = [
        ("vectis", "0003_fleet_writes"),
    ]

    operations = [
        migrations.AddField(
            model_name="fleetwrite",
            name="horizon",
            field=models.BigIntegerField(default=0),
        ),
        migrations.RunPython(narrow, widen),
    ]
