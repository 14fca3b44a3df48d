"""Account links now live in backups/ (see backups 0003): Django forgets them here. The
table and its rows stay untouched."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0002_connection_partial_runs_in_row"),
        ("backups", "0003_move_account_link"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="AccountLink")],
            database_operations=[],
        ),
    ]
