"""The three roles of an MSP's team, as Django groups with their permissions.

The definitions below are the truth: the data migration creates the groups, and every
`migrate` afterwards brings their permissions in line (a permission added by a later
migration joins its roles at once; one a role no longer lists is taken away from it).

- **Administrator**: everything — integrations and their credentials, alert rules,
  channels, maintenance windows, users, report settings, API keys.
- **Technician**: sees everything; acknowledges, snoozes and unsnoozes alerts, reviews
  account links (and names customers while doing so), starts a sync, sets who receives a
  customer's monthly report. Never sees or
  changes credentials, rules or channels.
- **Read-only**: sees the dashboards, customers, timelines and alerts.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps as global_apps
from django.apps.registry import Apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Q

ADMINISTRATOR = "Administrator"
TECHNICIAN = "Technician"
READ_ONLY = "Read-only"
ROLE_NAMES = (ADMINISTRATOR, TECHNICIAN, READ_ONLY)

# What a Read-only user looks at ("app.model": its view permission).
SEEN_BY_ALL = [
    "customers.customer",
    "backups.backupconnector",
    "backups.backupconnectorstatus",
    "backups.backupauditevent",
    "backups.backupjobday",
    "backups.accountlink",
    "backups.accountseat",
    "alerts.alert",
    "alerts.alertevent",
    "alerts.maintenancewindow",
    "integrations.syncrun",
    "integrations.connection",
    "vectis.monthlyreport",
]
# What a Technician sees on top: how alerting is set up, and what was sent.
SEEN_BY_TECHNICIANS = [
    "alerts.alertrule",
    "alerts.notificationchannel",
    "alerts.alertnotification",
    "vectis.reportsettings",
]
# What a Technician may do ("app.codename").
TECHNICIAN_ACTIONS = [
    "alerts.change_alert",  # acknowledge, snooze, unsnooze
    "backups.change_accountlink",  # link, create a customer for, exclude, include again
    "customers.add_customer",
    "customers.change_customer",
    "integrations.sync_connection",  # Sync now
    # who receives a customer's monthly report
    "vectis.add_reportsubscription",
    "vectis.change_reportsubscription",
    "vectis.view_reportsubscription",
]
# Every permission of these apps, and of every provider's (allauth's: users' second
# factors and SSO logins).
ADMINISTRATOR_APPS = [
    "customers",
    "backups",
    "integrations",
    "alerts",
    "auth",
    "axes",
    "access",
    "account",
    "socialaccount",
    "mfa",
    "admin",
    "vectis",
]


def _views(models: list[str]) -> list[str]:
    return [f"{model.split('.')[0]}.view_{model.split('.')[1]}" for model in models]


def provider_apps() -> list[str]:
    """The apps of the configured providers (their connection pages)."""
    return sorted({path.split(".", 1)[0] for path in settings.VECTIS_PROVIDERS.values()})


def role_permissions(apps: Apps) -> dict[str, Any]:
    """Each role's permissions, as querysets of the given app registry's Permission."""
    permission = apps.get_model("auth", "Permission")
    # Everyone may look at the providers' connection pages (never at their secrets).
    provider_views = Q(content_type__app_label__in=provider_apps(), codename__startswith="view_")

    def of(names: list[str]) -> Any:
        wanted = provider_views
        for name in names:
            app_label, codename = name.split(".")
            wanted |= Q(content_type__app_label=app_label, codename=codename)
        return permission.objects.filter(wanted)

    return {
        READ_ONLY: of(_views(SEEN_BY_ALL)),
        TECHNICIAN: of(_views(SEEN_BY_ALL + SEEN_BY_TECHNICIANS) + TECHNICIAN_ACTIONS),
        ADMINISTRATOR: permission.objects.filter(
            content_type__app_label__in=ADMINISTRATOR_APPS + provider_apps()
        ),
    }


def apply_roles(apps: Apps = global_apps) -> None:
    """Create the three groups if missing and give each exactly its permissions."""
    group = apps.get_model("auth", "Group")
    for name, permissions in role_permissions(apps).items():
        role, _ = group.objects.get_or_create(name=name)
        role.permissions.set(permissions)


def staff_with_a_role(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[int] | None, **_: Any
) -> None:
    """A user given a role can reach the admin (Django's "staff status" would otherwise
    have to be ticked as well, and a role without it opens nothing)."""
    if action != "post_add" or not pk_set:
        return
    user_model = get_user_model()
    if reverse:  # users added from the group's side
        if instance.name in ROLE_NAMES:
            user_model.objects.filter(pk__in=pk_set, is_staff=False).update(is_staff=True)
    elif Group.objects.filter(pk__in=pk_set, name__in=ROLE_NAMES).exists():
        user_model.objects.filter(pk=instance.pk, is_staff=False).update(is_staff=True)
        instance.is_staff = True


def on_post_migrate(sender: Any, apps: Apps = global_apps, **kwargs: Any) -> None:
    if sender.name == "access":  # once per migrate, after every app's permissions exist
        apply_roles(apps)
