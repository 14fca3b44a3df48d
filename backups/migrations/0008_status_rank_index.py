"""The attention list's order as an index on the status rows (rank, then oldest success
first): the dashboard's first page is read from it instead of sorting every connector.
A plain CREATE INDEX: the status table has one row per connector (80,000 rows: about
0.1 s, during which a sync's status writes wait)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('backups', '0007_job_day_failure_recent_idx'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='backupconnectorstatus',
            index=models.Index(models.Case(models.When(status='failed', then=models.Value(0)), models.When(status='warning', then=models.Value(1)), models.When(status='unknown', then=models.Value(2)), models.When(status='onboarding', then=models.Value(3)), models.When(status='ok', then=models.Value(4)), default=models.Value(9), output_field=models.IntegerField()), models.OrderBy(models.F('last_success_at'), nulls_first=True), name='connector_status_rank_idx'),
        ),
    ]
