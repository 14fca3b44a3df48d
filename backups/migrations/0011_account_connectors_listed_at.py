"""When each account's connector list was last read (`AccountLink.connectors_listed_at`):
between two readings a sync takes the stored list while its connectors' health shows no
change (KEEPIT_CONNECTORS_REFRESH_MINUTES). A nullable column without a default: PostgreSQL
adds it to the catalogue only, rewriting nothing; NULL means "read it next sync". The
lock it needs for that moment is not waited for longer than 10 s (lock_timeout), so a
sync holding the table does not queue every other writer behind the migration; run
`migrate` again then."""

from django.db import migrations, models


def limit_lock_wait(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("SET LOCAL lock_timeout = '10s'")


class Migration(migrations.Migration):

    dependencies = [
        ("backups", "0010_stale_crossing_indexes"),
    ]

    operations = [
        migrations.RunPython(limit_lock_wait, migrations.RunPython.noop),
        migrations.AddField(
            model_name="accountlink",
            name="connectors_listed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
