from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "Users and permissions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import roles, sessions

        sessions.connect_signals()
        # A model or permission added by a later migration joins its roles at once.
        post_migrate.connect(roles.on_post_migrate, dispatch_uid="access.roles")
