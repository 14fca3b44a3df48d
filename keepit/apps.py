from __future__ import annotations

from django.apps import AppConfig


class KeepitConfig(AppConfig):
    name = "keepit"
    verbose_name = "Keepit"
