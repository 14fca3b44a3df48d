"""App configs of the project package: the Vectis-branded admin site."""

from __future__ import annotations

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class VectisAdminConfig(admin_apps.AdminConfig):
    default = False
    default_site = "vectis.admin_site.VectisAdminSite"


class VectisConfig(AppConfig):
    default = True
    name = "vectis"
    verbose_name = "Vectis"

    def ready(self) -> None:
        from .admin_times import install

        install()
