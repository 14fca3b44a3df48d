"""Change capture (0012, 0013), closing two gaps a review found:
- a job day or status row updated marks the connector it belonged to as well as the one
  it belongs to (no writer moves one today; the audit events' function already did);
- failure events deleted mark their connectors: retention deletes events long after the
  usual lookback, but a rule's lookback has no upper limit and the retention is a
  setting, so a failure leaving the database inside a lookback must be seen.

Both trigger functions are replaced (CREATE OR REPLACE: no table is touched); the audit
events gain a DELETE trigger. Retention deletes events in batches: each batch's trigger
reads its deleted rows once (the failures among them).

Creating a trigger locks the audit events against writes for a moment (SHARE ROW
EXCLUSIVE), after any transaction still writing to them: run it between syncs. It gives
up after 10 s (lock_timeout) rather than hold every sync's inserts in a queue behind it;
run `migrate` again then."""

from django.db import migrations

QUEUE = "alert_connector_changes"
TRIGGER = "backup_audit_events_alert_changes_delete"

BY_CONNECTOR_ID = f"""
CREATE OR REPLACE FUNCTION alert_changes_by_connector_id() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
IF TG_OP = 'DELETE' THEN
  INSERT INTO {QUEUE} (connector_id) SELECT DISTINCT connector_id FROM old_rows;
ELSIF TG_OP = 'INSERT' THEN
  INSERT INTO {QUEUE} (connector_id) SELECT DISTINCT connector_id FROM new_rows;
ELSE
  INSERT INTO {QUEUE} (connector_id)
  SELECT connector_id FROM new_rows UNION SELECT connector_id FROM old_rows;
END IF;
RETURN NULL;
END
$$;"""

BY_FAILURE = f"""
CREATE OR REPLACE FUNCTION alert_changes_by_failure() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
IF TG_OP = 'INSERT' THEN
  INSERT INTO {QUEUE} (connector_id)
  SELECT DISTINCT connector_id FROM new_rows
  WHERE succeeded = false AND connector_id IS NOT NULL;
ELSIF TG_OP = 'DELETE' THEN
  INSERT INTO {QUEUE} (connector_id)
  SELECT DISTINCT connector_id FROM old_rows
  WHERE succeeded = false AND connector_id IS NOT NULL;
ELSE
  INSERT INTO {QUEUE} (connector_id)
  SELECT connector_id FROM new_rows WHERE succeeded = false AND connector_id IS NOT NULL
  UNION
  SELECT connector_id FROM old_rows WHERE succeeded = false AND connector_id IS NOT NULL;
END IF;
RETURN NULL;
END
$$;"""


def close_gaps(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("SET LOCAL lock_timeout = '10s'")
    schema_editor.execute(BY_CONNECTOR_ID)
    schema_editor.execute(BY_FAILURE)
    schema_editor.execute(
        f"CREATE TRIGGER {TRIGGER} AFTER DELETE ON backup_audit_events "
        "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION alert_changes_by_failure()"
    )


def reopen_gaps(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    # The functions keep their wider branches, which capture more, never less.
    schema_editor.execute("SET LOCAL lock_timeout = '10s'")
    schema_editor.execute(f"DROP TRIGGER IF EXISTS {TRIGGER} ON backup_audit_events")


class Migration(migrations.Migration):

    dependencies = [
        ("alerts", "0013_change_capture_openings"),
    ]

    operations = [migrations.RunPython(close_gaps, reopen_gaps)]
