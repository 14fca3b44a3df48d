"""The three roles (Administrator, Technician, Read-only) as groups with their
permissions (access/roles.py). Permissions are created here first: on a fresh database
Django creates them only after the last migration."""

from __future__ import annotations

from typing import Any

from django.apps.registry import Apps
from django.contrib.auth.management import create_permissions
from django.db import migrations

from access.roles import apply_roles


def create_roles(apps: Apps, schema_editor: Any) -> None:
    # An MSP's own group that happens to carry a role's name keeps its members and
    # permissions under another name; the role is created afresh.
    group = apps.get_model("auth", "Group")
    for name in ("Administrator", "Technician", "Read-only"):
        group.objects.filter(name=name).update(name=f"{name} (before Vectis roles)")
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    apply_roles(apps)


def remove_roles(apps: Apps, schema_editor: Any) -> None:
    apps.get_model("auth", "Group").objects.filter(
        name__in=["Administrator", "Technician", "Read-only"]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("admin", "0003_logentry_add_action_flag_choices"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("customers", "0002_renormalize_names"),
        ("backups", "0006_time_brin_indexes"),
        ("integrations", "0006_connection_sync_permission"),
        ("keepit", "0001_initial"),
        ("alerts", "0007_channel_digest_only_protect_deliveries"),
        ("axes", "0010_accessattemptexpiration"),
        ("account", "0009_emailaddress_unique_primary_email"),
        ("socialaccount", "0006_alter_socialaccount_extra_data"),
        ("mfa", "0003_authenticator_type_uniq"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
