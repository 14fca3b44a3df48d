"""The kept tiles' origin token (0004) read through a function that returns NULL on a
standby: there a query naming the unlogged table fails while it is planned ("cannot
access temporary or unlogged relations during recovery"), before any guard in it runs;
PL/pgSQL plans its inner query only when it reaches it. An empty string: no token yet.
Creating a function touches no table."""

from django.db import migrations

FUNCTION = """
CREATE FUNCTION fleet_origin_token() RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
  found uuid;
BEGIN
  IF pg_is_in_recovery() THEN
    RETURN NULL;
  END IF;
  SELECT token INTO found FROM fleet_origin;
  RETURN coalesce(found::text, '');
END
$$;"""


def create_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTION)


def drop_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS fleet_origin_token()")


class Migration(migrations.Migration):

    dependencies = [
        ("vectis", "0004_fleet_write_horizon_and_origin"),
    ]

    operations = [
        migrations.RunPython(create_function, drop_function),
    ]
