"""Change capture (0012) also for alerts opened: an open failed-backup alert holds on to
its connector's older failed jobs (within the 28 days kept), so the pass after an
opening must look at that connector again, as a full pass would. The alerts' trigger
function is replaced (CREATE OR REPLACE: no table is touched) and gains an INSERT
trigger."""

from django.db import migrations

QUEUE = "alert_connector_changes"
TRIGGER = "alerts_alert_changes_insert"

WITH_OPENINGS = f"""
CREATE OR REPLACE FUNCTION alert_changes_by_alert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
IF TG_OP = 'DELETE' THEN
  INSERT INTO {QUEUE} (connector_id)
  SELECT DISTINCT connector_id FROM old_rows
  WHERE connector_id IS NOT NULL AND resolved_at IS NULL;
ELSIF TG_OP = 'INSERT' THEN
  INSERT INTO {QUEUE} (connector_id)
  SELECT DISTINCT connector_id FROM new_rows
  WHERE connector_id IS NOT NULL AND resolved_at IS NULL;
ELSE
  INSERT INTO {QUEUE} (connector_id)
  SELECT DISTINCT n.connector_id FROM new_rows n JOIN old_rows o ON o.id = n.id
  WHERE n.connector_id IS NOT NULL AND n.resolved_at IS NOT NULL AND o.resolved_at IS NULL;
END IF;
RETURN NULL;
END
$$;"""


def add_openings(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(WITH_OPENINGS)
    schema_editor.execute(
        f"CREATE TRIGGER {TRIGGER} AFTER INSERT ON alerts REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION alert_changes_by_alert()"
    )


def drop_openings(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    # The function keeps its INSERT branch, which nothing calls any more.
    schema_editor.execute(f"DROP TRIGGER IF EXISTS {TRIGGER} ON alerts")


class Migration(migrations.Migration):

    dependencies = [
        ("alerts", "0012_change_capture"),
    ]

    operations = [migrations.RunPython(add_openings, drop_openings)]
