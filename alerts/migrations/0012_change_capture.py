"""Change capture for the alert evaluation: the connectors whose data a rule reads were
written since its last pass (alerts.models.ConnectorChange, RulePass; alerts/passes.py).

On PostgreSQL, statement-level triggers with transition tables add one row per connector
a statement touched, in the writer's own transaction:
- job days, status rows and connectors: every row written (the sync writes only rows
  that changed);
- audit events: the connectors of failure events inserted, or moved between connectors;
- account links: the connectors of an account whose state or deletion date changed;
- customers: the connectors of a customer renamed (the alerts' words name it);
- alerts: the connector of an open alert resolved or deleted by anything.

Audit events deleted are not captured: only retention deletes them, long after any
lookback (a full pass every hour is the safety net for what no trigger sees).

SQLite (the demo) has no triggers here: every pass there is a full pass. Creating the
tables and triggers rewrites nothing."""

import django.db.models.deletion
from django.db import migrations, models

QUEUE = "alert_connector_changes"


def _function(name: str, body: str) -> str:
    return (
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        f"BEGIN\n{body}\nRETURN NULL;\nEND\n$$;"
    )


# (trigger function, its body). A function reads only the transition tables its
# triggers define (PL/pgSQL plans each statement when it first runs it).
FUNCTIONS = {
    "alert_changes_by_connector_id": f"""
IF TG_OP = 'DELETE' THEN
  INSERT INTO {QUEUE} (connector_id) SELECT DISTINCT connector_id FROM old_rows;
ELSE
  INSERT INTO {QUEUE} (connector_id) SELECT DISTINCT connector_id FROM new_rows;
END IF;""",
    "alert_changes_by_id": f"""
INSERT INTO {QUEUE} (connector_id) SELECT id FROM new_rows;""",
    "alert_changes_by_failure": f"""
IF TG_OP = 'INSERT' THEN
  INSERT INTO {QUEUE} (connector_id)
  SELECT DISTINCT connector_id FROM new_rows
  WHERE succeeded = false AND connector_id IS NOT NULL;
ELSE
  INSERT INTO {QUEUE} (connector_id)
  SELECT connector_id FROM new_rows WHERE succeeded = false AND connector_id IS NOT NULL
  UNION
  SELECT connector_id FROM old_rows WHERE succeeded = false AND connector_id IS NOT NULL;
END IF;""",
    "alert_changes_by_account": f"""
INSERT INTO {QUEUE} (connector_id)
SELECT c.id FROM backup_connectors c
JOIN new_rows n ON c.account_link_id = n.id
JOIN old_rows o ON o.id = n.id
WHERE (n.state, n.deletion_scheduled_at, n.removed_at)
  IS DISTINCT FROM (o.state, o.deletion_scheduled_at, o.removed_at);""",
    "alert_changes_by_customer": f"""
INSERT INTO {QUEUE} (connector_id)
SELECT c.id FROM backup_connectors c
JOIN new_rows n ON c.customer_id = n.id
JOIN old_rows o ON o.id = n.id
WHERE n.name IS DISTINCT FROM o.name;""",
    "alert_changes_by_alert": f"""
IF TG_OP = 'DELETE' THEN
  INSERT INTO {QUEUE} (connector_id)
  SELECT DISTINCT connector_id FROM old_rows
  WHERE connector_id IS NOT NULL AND resolved_at IS NULL;
ELSE
  INSERT INTO {QUEUE} (connector_id)
  SELECT DISTINCT n.connector_id FROM new_rows n JOIN old_rows o ON o.id = n.id
  WHERE n.connector_id IS NOT NULL AND n.resolved_at IS NOT NULL AND o.resolved_at IS NULL;
END IF;""",
}

# (table, events, function): one trigger per event (a trigger with transition tables
# has one event).
TRIGGERS = [
    ("backup_job_days", ("INSERT", "UPDATE", "DELETE"), "alert_changes_by_connector_id"),
    ("backup_connector_status", ("INSERT", "UPDATE", "DELETE"), "alert_changes_by_connector_id"),
    ("backup_connectors", ("INSERT", "UPDATE"), "alert_changes_by_id"),
    ("backup_audit_events", ("INSERT", "UPDATE"), "alert_changes_by_failure"),
    ("integration_account_links", ("UPDATE",), "alert_changes_by_account"),
    ("customers", ("UPDATE",), "alert_changes_by_customer"),
    ("alerts", ("UPDATE", "DELETE"), "alert_changes_by_alert"),
]


def _trigger_name(table: str, event: str) -> str:
    return f"{table}_alert_changes_{event.lower()}"


def create_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, body in FUNCTIONS.items():
        schema_editor.execute(_function(name, body))
    for table, events, function in TRIGGERS:
        for event in events:
            tables = {
                "INSERT": "NEW TABLE AS new_rows",
                "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
                "DELETE": "OLD TABLE AS old_rows",
            }[event]
            schema_editor.execute(
                f"CREATE TRIGGER {_trigger_name(table, event)} AFTER {event} ON {table} "
                f"REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
            )


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, events, _function_name in TRIGGERS:
        for event in events:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {_trigger_name(table, event)} ON {table}")
    for name in FUNCTIONS:
        schema_editor.execute(f"DROP FUNCTION IF EXISTS {name}()")


class Migration(migrations.Migration):

    dependencies = [
        ("alerts", "0011_alert_open_connector_index"),
        ("backups", "0008_status_rank_index"),
        ("customers", "0002_renormalize_names"),
    ]

    operations = [
        migrations.CreateModel(
            name="ConnectorChange",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("connector_id", models.BigIntegerField()),
            ],
            options={
                "db_table": "alert_connector_changes",
            },
        ),
        migrations.CreateModel(
            name="RulePass",
            fields=[
                (
                    "rule",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="last_pass",
                        serialize=False,
                        to="alerts.alertrule",
                    ),
                ),
                ("evaluated_at", models.DateTimeField()),
                ("full_at", models.DateTimeField()),
                ("fingerprint", models.CharField(max_length=64)),
            ],
            options={
                "db_table": "alert_rule_passes",
            },
        ),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
