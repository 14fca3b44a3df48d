"""Index alert_resolved_key_idx: the resolved alerts by key, for linking an alert that
opens to the latest resolved alert of its condition (`previous`). Without it each pass
that opens an alert scanned every alert kept (12 ms at 95,000 alerts; with the
incremental passes that was a third of a stale rule's pass). A plain CREATE INDEX, as
0010 and 0011: the alerts table is small beside the audit events (a fraction of a second
at 95,000 alerts, during which alert writes wait)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("alerts", "0014_change_capture_moves_and_deletions"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="alert",
            index=models.Index(
                condition=models.Q(("resolved_at__isnull", False)),
                fields=["key"],
                name="alert_resolved_key_idx",
            ),
        ),
    ]
