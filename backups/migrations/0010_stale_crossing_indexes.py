"""Indexes for the stale rule's incremental passes (alerts/passes.py): the last complete
backups that grew past the rule's threshold, and the connectors whose onboarding grace
ran out, in the few minutes since the last pass. Without them each pass read every
status row and every connector (about 15 ms each at 80,000 connectors). Plain CREATE
INDEX, as 0008: one row per connector in each table (a fraction of a second at 80,000,
during which the sync's status and connector writes wait)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("backups", "0009_audit_connector_failure_idx"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="backupconnector",
            index=models.Index(fields=["first_seen_at"], name="connector_first_seen_idx"),
        ),
        migrations.AddIndex(
            model_name="backupconnectorstatus",
            index=models.Index(fields=["last_success_at"], name="connector_status_success_idx"),
        ),
    ]
