"""Account links move from integrations/ to backups/ (one home per concept).

Only Django's picture of the models changes: the table keeps its name
(integration_account_links) and its rows, and no SQL runs against it. The content type
(and with it every permission on account links, granted to users or groups) is renamed
to the new app.
"""

from typing import Any

import django.db.models.deletion
from django.db import migrations, models


def move_content_type(apps: Any, schema_editor: Any) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="backups", model="accountlink").exists():
        ContentType.objects.filter(app_label="integrations", model="accountlink").update(
            app_label="backups"
        )


def move_content_type_back(apps: Any, schema_editor: Any) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="integrations", model="accountlink").exists():
        ContentType.objects.filter(app_label="backups", model="accountlink").update(
            app_label="integrations"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("backups", "0002_audit_relink_indexes"),
        ("customers", "0002_renormalize_names"),
        ("integrations", "0002_connection_partial_runs_in_row"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="AccountLink",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("external_id", models.CharField(max_length=100)),
                        ("company_name", models.CharField(blank=True, default="", max_length=255)),
                        ("contact_name", models.CharField(blank=True, default="", max_length=255)),
                        ("email", models.CharField(blank=True, default="", max_length=255)),
                        (
                            "method",
                            models.CharField(
                                blank=True,
                                choices=[
                                    ("exact", "Exact name"),
                                    ("normalised", "Normalised name"),
                                    ("created", "Created by sync"),
                                    ("manual", "Manual"),
                                ],
                                default="",
                                max_length=16,
                            ),
                        ),
                        (
                            "state",
                            models.CharField(
                                choices=[
                                    ("linked", "Linked"),
                                    ("unlinked", "Unlinked"),
                                    ("ambiguous", "Ambiguous"),
                                    ("excluded", "Excluded"),
                                ],
                                default="unlinked",
                                max_length=16,
                            ),
                        ),
                        ("first_seen_at", models.DateTimeField()),
                        ("last_seen_at", models.DateTimeField()),
                        ("removed_at", models.DateTimeField(blank=True, null=True)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                        (
                            "customer",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="account_links",
                                to="customers.customer",
                            ),
                        ),
                        (
                            "connection",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="account_links",
                                to="integrations.connection",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "integration_account_links",
                        "indexes": [models.Index(fields=["state"], name="account_link_state_idx")],
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("connection", "external_id"),
                                name="account_link_unique_external_id",
                            )
                        ],
                    },
                ),
                migrations.AlterField(
                    model_name="backupconnector",
                    name="account_link",
                    field=models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="connectors",
                        to="backups.accountlink",
                    ),
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_type, move_content_type_back),
    ]
