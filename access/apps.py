from __future__ import annotations

from django.apps import AppConfig
from django.contrib.auth import get_user_model
from django.db.models.signals import m2m_changed, post_migrate


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "Users and permissions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import roles, sessions

        sessions.connect_signals()
        # A model or permission added by a later migration joins its roles at once.
        post_migrate.connect(roles.on_post_migrate, dispatch_uid="access.roles")
        m2m_changed.connect(
            roles.staff_with_a_role,
            sender=get_user_model().groups.through,
            dispatch_uid="access.staff_with_a_role",
        )
